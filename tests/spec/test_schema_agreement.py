"""Two validators, one verdict: pydantic and the `jsonschema` package agree on the structure of
every document of every example case, and cross-field cases are schema-valid under both. A
manifest of major version 1 is checked against the frozen version 1 schema on one side and, on
the other, by pydantic after the version 1 reader turned it into version 2 form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError
from spec_cases import CASES, Case

from ckptspec.findings import CODES
from ckptspec.jsonload import read_document
from ckptspec.manifest import Manifest
from ckptspec.run_index import RunIndex
from ckptspec.schemas import FROZEN_MANIFEST_SCHEMAS, SpecJsonSchema, load_schema
from ckptspec.structure import from_version_1

MODELS: dict[str, type[BaseModel]] = {"manifest.json": Manifest, "run.json": RunIndex}
SCHEMAS = {
    name: Draft202012Validator(load_schema(name))
    for name in ("manifest.schema.json", "run-index.schema.json", FROZEN_MANIFEST_SCHEMAS[1])
}


def is_version_1_manifest(name: str, value: Any) -> bool:
    version = value.get("spec_version") if isinstance(value, dict) else None
    return name == "manifest.json" and isinstance(version, str) and version.startswith("1.")


def schema_for(name: str, value: Any) -> str:
    """The schema file a document named ``name`` is checked against (by its major version)."""
    if is_version_1_manifest(name, value):
        return FROZEN_MANIFEST_SCHEMAS[1]
    return {"manifest.json": "manifest.schema.json", "run.json": "run-index.schema.json"}[name]


def both_verdicts(name: str, value: Any) -> tuple[bool, bool]:
    """(pydantic's verdict, jsonschema's verdict) on the document ``value`` named ``name``."""
    return verdicts(
        MODELS[name], SCHEMAS[schema_for(name, value)], value, is_version_1_manifest(name, value)
    )


def verdicts(
    model: type[BaseModel], validator: Draft202012Validator, value: Any, version_1: bool = False
) -> tuple[bool, bool]:
    converted, misplaced = from_version_1(value) if version_1 else (value, [])
    try:
        model.model_validate(converted)
        by_pydantic = not misplaced
    except ValidationError:
        by_pydantic = False
    return by_pydantic, validator.is_valid(value)


def _structure_only(case: Case) -> bool:
    return all(CODES[c].stage == "structure" for c in case.spec["codes"])


@pytest.mark.parametrize(
    "name, major",
    [("manifest.schema.json", 2), ("run-index.schema.json", 2), (FROZEN_MANIFEST_SCHEMAS[1], 1)],
)
def test_schemas_are_valid_draft_2020_12(name: str, major: int) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert (
        schema["$schema"]
        == SpecJsonSchema.schema_dialect
        == "https://json-schema.org/draft/2020-12/schema"
    )
    kind = "manifest" if name.startswith("manifest") else "run-index"
    assert schema["$id"] == f"urn:ckptspec:schema:{major}:{kind}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_pydantic_and_jsonschema_agree(case: Case) -> None:
    for path in case.documents():
        value, problems = read_document(str(path))
        if problems:  # not JSON within the limits: neither validator gets to see it
            continue
        by_pydantic, by_schema = both_verdicts(path.name, value)
        assert by_pydantic == by_schema, f"{path}: pydantic {by_pydantic}, jsonschema {by_schema}"
        codes = case.spec["codes"]
        if (
            case.spec["verdict"] == "not_checked"
        ):  # detection or a newer minor's value: no schema verdict is pinned
            continue
        if not codes or all(CODES[c].stage in ("rule", "files", "run") for c in codes):
            assert by_schema, f"{path}: a cross-field or valid case must be schema-valid"
        elif _structure_only(case) and path.name == Path(case.spec["path"]).name:
            assert not by_schema, f"{path}: a structure case must be schema-invalid"


@pytest.mark.parametrize(
    "value, valid",
    [
        (100, True),
        (100.0, True),
        (1e2, True),
        (100.5, False),
        (True, False),
        ("100", False),
        (-1, False),
        (-0.0, True),
    ],
)
def test_integral_numbers_agree(value: Any, valid: bool) -> None:
    base = Manifest.model_validate(
        read_document(
            str(next(c for c in CASES if c.name == "manifest-world2").directory / "manifest.json")
        )[0]
    )
    document = base.model_dump(mode="json", exclude_unset=True)
    document["step"] = value
    document["progress"]["global_step"] = value
    assert both_verdicts("manifest.json", document) == (valid, valid)


@pytest.mark.parametrize(
    "path, valid",
    [
        ("a", True),
        ("a/b.pt", True),
        (".metadata", True),
        ("..a", True),
        ("...", True),
        ("a\n", True),
        ("", False),
        (".", False),
        ("..", False),
        ("/a", False),
        ("a/", False),
        ("a//b", False),
        ("a/./b", False),
        ("a/../b", False),
        ("a\\b", False),
        ("a\x00b", False),
        ("\n/../b", False),
        ("x" * 1025, False),
    ],
)
def test_relative_path_rules_agree(path: str, valid: bool) -> None:
    base = Manifest.model_validate(
        read_document(
            str(next(c for c in CASES if c.name == "manifest-world2").directory / "manifest.json")
        )[0]
    )
    document = base.model_dump(mode="json", exclude_unset=True)
    document["components"][0]["files"][0]["path"] = path
    assert both_verdicts("manifest.json", document) == (valid, valid)
