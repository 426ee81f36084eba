"""The generated parts of ``docs/spec/``: requirement tables and the finding-code table.

A page holds hand-written prose and generated blocks between marker comments::

    <!-- BEGIN GENERATED: requirements layout -->
    ...
    <!-- END GENERATED -->

:func:`refresh` rewrites every block of a page from the registries; ``ckptspec schema --check``
reports a page whose blocks differ, so the docs cannot drift from the code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args

from ckptspec.findings import CODES_LIST, Stage
from ckptspec.requirements import REQUIREMENTS, Section
from ckptspec.schemas import SCHEMA_MODELS, json_schema
from ckptspec.structure import SCHEMA_ERROR_CODES

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs" / "spec"
"""The spec pages in a source checkout (absent in an installed wheel)."""

PAGES: dict[str, tuple[str, ...]] = {
    **{f"{section.value}.md": (f"requirements {section.value}",) for section in Section},
    "codes.md": ("codes",),
}
PAGES["manifest.md"] += ("fields manifest",)
PAGES["run.md"] += ("fields run-index",)
PAGES["validating.md"] = ("schema-codes", "stages")
"""Page file name -> the generated blocks it must contain."""

_BLOCK_RE = re.compile(
    r"(<!-- BEGIN GENERATED: ([a-z0-9 _-]+) -->\n)(.*?)(<!-- END GENERATED -->)", re.DOTALL
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def requirements_table(section: Section) -> str:
    """The Markdown table of the requirements of ``section``."""
    rows = ["| ID | Level | Requirement | Checked by |", "|---|---|---|---|"]
    for r in REQUIREMENTS:
        if r.section is section:
            rows.append(
                f'| <a id="{r.id.lower()}"></a>{r.id} | {r.level.value} | **{_cell(r.title)}.** {_cell(r.statement)} | {", ".join(r.verified_by)} |'
            )
    return "\n".join(rows) + "\n"


def codes_table() -> str:
    """The Markdown table of every validator finding code."""
    rows = ["| Code | Requirement | Severity | Stage | Meaning |", "|---|---|---|---|---|"]
    for c in CODES_LIST:
        section = c.requirement.split("-")[0].lower()
        page = "versioning" if section == "version" else section
        rows.append(
            f"| `{c.code}` | [{c.requirement}]({page}.md#{c.requirement.lower()}) | {c.severity.value} | {c.stage} | {_cell(c.meaning)} |"
        )
    return "\n".join(rows) + "\n"


def schema_codes_table() -> str:
    """The Markdown table of the schema errors that get a code of their own (``SCHEMA_ERROR_CODES``)."""
    rows = ["| Document | Location (JSON Pointer, `*` any index) | Code |", "|---|---|---|"]
    rows += [f"| {r.document} | `{r.location}` | `{r.code}` |" for r in SCHEMA_ERROR_CODES]
    return "\n".join(rows) + "\n"


def stages_table() -> str:
    """The Markdown table of the stages, in the order they run, with their codes in registry order."""
    rows = ["| Stage | Codes |", "|---|---|"]
    for stage in get_args(Stage):
        rows.append(
            f"| `{stage}` | {', '.join(f'`{c.code}`' for c in CODES_LIST if c.stage == stage)} |"
        )
    return "\n".join(rows) + "\n"


def _type(node: dict[str, Any]) -> str:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in node:
        return " or ".join(_type(n) for n in node["anyOf"])
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    kind = str(node.get("type", "any JSON value"))
    if kind == "array":
        return f"array of {_type(node.get('items', {}))}" + (
            f" (at least {node['minItems']})" if "minItems" in node else ""
        )
    if kind == "object":
        values = node.get("additionalProperties", True)
        entries = (
            f" (at least {node['minProperties']} entry)"
            if node.get("minProperties") == 1
            else (f" (at least {node['minProperties']} entries)" if "minProperties" in node else "")
        )
        return ("object" if values is True else f"object of {_type(values)}") + entries
    bounds = [f"≥ {node['minimum']}"] if "minimum" in node else []
    if "pattern" in node:
        bounds.append(f"matching `{node['pattern']}`".replace("|", "\\|"))
    if "minLength" in node:
        bounds.append(
            f"at least {node['minLength']} character{'s' if node['minLength'] != 1 else ''}"
        )
    if "maxLength" in node:
        bounds.append(f"at most {node['maxLength']} characters")
    return kind + (" " + ", ".join(bounds) if bounds else "")


def fields_tables(schema_file: str) -> str:
    """One Markdown table per object of the schema ``schema_file``: field, type, required, meaning.

    Objects appear in the order they are first referenced from the root.
    """
    model, schema_id = SCHEMA_MODELS[schema_file]
    schema = json_schema(model, schema_id)
    defs: dict[str, Any] = schema.get("$defs", {})
    order, queue = [], [(model.__name__, schema)]
    while queue:
        name, node = queue.pop(0)
        if name in order:
            continue
        order.append(name)
        text = json.dumps(node.get("properties", {}))
        queue += [(ref, defs[ref]) for ref in re.findall(r'"#/\$defs/([A-Za-z]+)"', text)]
    out = []
    for name in order:
        node = schema if name == model.__name__ else defs[name]
        out += [
            f"#### {name}",
            "",
            _cell(node.get("description", "")),
            "",
            "| Field | Type | Required | Meaning |",
            "|---|---|---|---|",
        ]
        required = set(node.get("required", []))
        for field, prop in node.get("properties", {}).items():
            ref = re.search(r"#/\$defs/([A-Za-z]+)", json.dumps(prop))
            meaning = prop.get("description") or (
                defs[ref.group(1)].get("description", "") if ref else ""
            )
            out.append(
                f"| `{field}` | {_type(prop)} | {'yes' if field in required else 'no'} | {_cell(meaning)} |"
            )
        out.append("")
    return "\n".join(out)


def block_content(name: str) -> str:
    """The generated content of the block called ``name``."""
    kind, _, arg = name.partition(" ")
    if kind == "codes":
        return codes_table()
    if kind == "schema-codes":
        return schema_codes_table()
    if kind == "stages":
        return stages_table()
    if kind == "requirements":
        return requirements_table(Section(arg))
    if kind == "fields":
        return fields_tables(f"{arg}.schema.json")
    raise KeyError(f"unknown generated block {name!r}")


def refresh(page: str, text: str) -> str:
    """``text`` with every generated block rewritten; raises ``ValueError`` if a block ``page`` needs is absent."""
    found: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        found.add(match.group(2))
        return match.group(1) + block_content(match.group(2)) + match.group(4)

    result = _BLOCK_RE.sub(replace, text)
    missing = [b for b in PAGES.get(page, ()) if b not in found]
    if missing:
        raise ValueError(f"{page}: missing generated block(s): {', '.join(missing)}")
    return result
