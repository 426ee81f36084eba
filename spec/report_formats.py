"""``validate``'s findings in the formats CI systems read: SARIF 2.1.0 (code scanning), JUnit XML
(test tabs) and GitHub workflow commands (annotations on the changed files).

Each takes the ``validate --format json`` document (:class:`ckptspec.validate_cmd.ValidateOutput`),
so every format says exactly what the JSON says. A finding about a JSON document (a manifest or
run index) with a JSON Pointer is placed on the line where the pointed-to value starts.
"""

from __future__ import annotations

import json
import os
from json.decoder import scanstring
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

from ckptspec.findings import CODES, Finding

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_MAX_LOCATED_BYTES = 16 * 1024 * 1024
_WS = " \t\n\r"


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _value_at(text: str, i: int, parts: list[str]) -> int | None:
    """The offset where the value at the JSON Pointer ``parts`` (below the value at ``i``) starts."""
    decoder = json.JSONDecoder()
    i = _skip(text, i)
    if not parts:
        return i
    if i >= len(text) or text[i] not in "{[":
        return None
    is_object, index = text[i] == "{", 0
    i = _skip(text, i + 1)
    while i < len(text) and text[i] not in "}]":
        if is_object:
            key, i = scanstring(text, i + 1)
            i = _skip(text, i) + 1  # the colon
        else:
            key, index = str(index), index + 1
        if key == parts[0]:
            return _value_at(text, i, parts[1:])
        _, i = decoder.raw_decode(text, _skip(text, i))
        i = _skip(text, i)
        i = _skip(text, i + 1) if i < len(text) and text[i] == "," else i
    return None


def pointer_line(path: str, pointer: str | None) -> int | None:
    """The 1-based line of the JSON file ``path`` where the value at ``pointer`` starts; None when
    the file is not JSON, cannot be read, is over 16 MiB, or the pointer leads nowhere."""
    if pointer is None or not path.endswith(".json"):
        return None
    try:
        if os.path.getsize(path) > _MAX_LOCATED_BYTES:
            return None
        with open(path, encoding="utf-8") as f:
            text = f.read()
        parts = (
            [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
            if pointer
            else []
        )
        offset = _value_at(text, 0, parts)
    except (OSError, ValueError, IndexError):
        return None
    return None if offset is None else text.count("\n", 0, offset) + 1


def _findings(document: dict[str, Any]) -> list[Finding]:
    return [Finding.model_validate(f) for f in document["findings"]]


def _uri(path: str) -> str:
    posix = path.replace(os.sep, "/")
    return "file://" + quote(posix) if os.path.isabs(path) else quote(posix)


def sarif(document: dict[str, Any]) -> dict[str, Any]:
    """The SARIF 2.1.0 log of a ``validate`` run: one rule per finding code, one result per finding."""
    findings = _findings(document)
    codes = sorted({f.code for f in findings})
    rules = [
        {
            "id": code,
            "shortDescription": {"text": CODES[code].meaning if code in CODES else code},
            "properties": {"requirement": CODES[code].requirement if code in CODES else None},
        }
        for code in codes
    ]
    results = []
    for f in findings:
        location: dict[str, Any] = {"artifactLocation": {"uri": _uri(f.path)}}
        line = pointer_line(f.path, f.pointer)
        if line is not None:
            location["region"] = {"startLine": line}
        results.append(
            {
                "ruleId": f.code,
                "ruleIndex": codes.index(f.code),
                "level": f.severity.value,
                "message": {"text": f"{f.requirement}: {f.message}"},
                "locations": [{"physicalLocation": location}],
                "properties": {
                    "requirement": f.requirement,
                    **({"pointer": f.pointer} if f.pointer is not None else {}),
                },
            }
        )
    problems = [t for t in document["targets"] if not t["checked"]]
    invocation = {
        "executionSuccessful": not problems,
        "toolExecutionNotifications": [
            {
                "level": "error",
                "message": {"text": f"cannot check {t['error']}"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(t["path"])}}}],
            }
            for t in problems
        ],
    }
    name, _, version = document["validator"].partition(" ")
    driver = {"name": name, "version": version, "rules": rules}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "invocations": [invocation], "results": results}],
    }


def _belongs(finding: Finding, target: str) -> bool:
    root = target.rstrip("/")
    return finding.path == root or finding.path.startswith(root + "/")


def junit(document: dict[str, Any]) -> str:
    """JUnit XML: one test case per path named on the command line, failing with its errors
    (an error element when it could not be checked); warnings go to the case's system-out."""
    findings = _findings(document)
    suite = ElementTree.Element("testsuite", name="ckptspec validate")
    failures = errors = 0
    for target in document["targets"]:
        case = ElementTree.SubElement(
            suite, "testcase", classname="ckptspec.validate", name=target["path"]
        )
        own = [f for f in findings if _belongs(f, target["path"])]
        if not target["checked"]:
            errors += 1
            ElementTree.SubElement(
                case, "error", message=f"cannot check {target['error']}", type="not_checked"
            )
            continue
        bad = [f for f in own if f.severity.value == "error"]
        if bad:
            failures += 1
            failure = ElementTree.SubElement(
                case, "failure", message=f"{len(bad)} error(s): {bad[0].code}", type=bad[0].code
            )
            failure.text = "\n".join(f.line() for f in bad)
        warnings = [f for f in own if f.severity.value != "error"]
        if warnings:
            ElementTree.SubElement(case, "system-out").text = "\n".join(f.line() for f in warnings)
    suite.set("tests", str(len(document["targets"])))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    root = ElementTree.Element(
        "testsuites",
        name="ckptspec",
        tests=suite.get("tests", "0"),
        failures=str(failures),
        errors=str(errors),
    )
    root.append(suite)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def github(document: dict[str, Any]) -> str:
    """GitHub workflow commands: ``::error file=...,line=...,title=...::message`` per finding
    (``::warning`` for a warning) and one ``::error`` per path that could not be checked."""
    lines = []
    for f in _findings(document):
        props = f"file={_escape(f.path, True)}"
        line = pointer_line(f.path, f.pointer)
        if line is not None:
            props += f",line={line}"
        props += f",title={_escape(f'{f.code} ({f.requirement})', True)}"
        where = f" [{f.pointer}]" if f.pointer else ""
        lines.append(f"::{f.severity.value} {props}::{_escape(f.message + where)}")
    for t in document["targets"]:
        if not t["checked"]:
            lines.append(
                f"::error file={_escape(t['path'], True)},title=cannot check::{_escape(str(t['error']))}"
            )
    return "".join(line + "\n" for line in lines)
