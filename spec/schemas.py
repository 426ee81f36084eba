"""The JSON Schemas generated from the spec models, and the registries exported as JSON.

The files under ``spec/schemas/`` are what non-Python tools read. They are generated (never
edited by hand) with sorted keys, two-space indent and a trailing newline, so regeneration is
byte-stable and ``ckptspec schema --check`` can tell when one is stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import core_schema

from ckptspec import SPEC_VERSION
from ckptspec.conformance_output import CONFORMANCE_REPORT_VERSION, ConformanceReport
from ckptspec.diff_cmd import DIFF_OUTPUT_VERSION, DiffOutput
from ckptspec.example_cases import ExampleCase
from ckptspec.findings import CODES_LIST
from ckptspec.inspect_cmd import INSPECT_OUTPUT_VERSION, InspectOutput
from ckptspec.manifest import Manifest
from ckptspec.requirements import REQUIREMENTS
from ckptspec.run_index import RunIndex
from ckptspec.validate_cmd import VALIDATE_OUTPUT_VERSION, ValidateOutput

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
"""Where the generated files live (shipped as package data)."""

_MAJOR = SPEC_VERSION.split(".")[0]

SCHEMA_MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "manifest.schema.json": (Manifest, f"urn:ckptspec:schema:{_MAJOR}:manifest"),
    "run-index.schema.json": (RunIndex, f"urn:ckptspec:schema:{_MAJOR}:run-index"),
    "inspect-output.schema.json": (
        InspectOutput,
        f"urn:ckptspec:output:{INSPECT_OUTPUT_VERSION}:inspect",
    ),
    "diff-output.schema.json": (DiffOutput, f"urn:ckptspec:output:{DIFF_OUTPUT_VERSION}:diff"),
    "validate-output.schema.json": (
        ValidateOutput,
        f"urn:ckptspec:output:{VALIDATE_OUTPUT_VERSION}:validate",
    ),
    "conformance-report.schema.json": (
        ConformanceReport,
        f"urn:ckptspec:output:{CONFORMANCE_REPORT_VERSION}:conformance-report",
    ),
    "example-case.schema.json": (ExampleCase, f"urn:ckptspec:schema:{_MAJOR}:example-case"),
}
"""Schema file name -> (model, ``$id``): the two document schemas, and the versioned output
shapes of ``inspect``, ``diff`` and ``validate --format json`` and of the suite's report, and the ``case.json`` of the
example cases."""


FROZEN_MANIFEST_SCHEMAS: dict[int, str] = {1: "manifest-v1.schema.json"}
"""The manifest schema of each older major version this package reads, by major version: kept
as published (never regenerated), for tools that check those documents."""


class SpecJsonSchema(GenerateJsonSchema):
    """pydantic's JSON Schema generator with the spec's conventions: ``$schema`` names the
    dialect (draft 2020-12), and every regex anchored with ``$`` ends ``$(?!\\n)``. Python's
    ``re`` (used by the ``jsonschema`` package) lets ``$`` match before a final newline;
    ECMA-262 and pydantic do not, and ``$(?!\\n)`` means "end of string" in all of them."""

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        out = super().str_schema(schema)
        pattern = out.get("pattern")
        if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith("\\$"):
            out["pattern"] = pattern + r"(?!\n)"
        return out

    def generate(
        self, schema: core_schema.CoreSchema, mode: JsonSchemaMode = "validation"
    ) -> JsonSchemaValue:
        return {**super().generate(schema, mode), "$schema": self.schema_dialect}


def json_schema(model: type[BaseModel], schema_id: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``model`` with ``$id`` ``schema_id``."""
    return {
        **model.model_json_schema(mode="validation", schema_generator=SpecJsonSchema),
        "$id": schema_id,
    }


def render(document: Any) -> str:
    """The stable text form of a generated JSON file."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def registry_documents() -> dict[str, Any]:
    """The requirement and code registries as JSON documents, by file name."""
    return {
        "requirements.json": {
            "spec_version": SPEC_VERSION,
            "requirements": [r.model_dump(mode="json") for r in REQUIREMENTS],
        },
        "codes.json": {
            "spec_version": SPEC_VERSION,
            "codes": [c.model_dump(mode="json") for c in CODES_LIST],
        },
    }


def generated_files() -> dict[str, str]:
    """Every file of ``spec/schemas/`` by name, with its expected content."""
    files = {name: render(json_schema(model, sid)) for name, (model, sid) in SCHEMA_MODELS.items()}
    files.update({name: render(doc) for name, doc in registry_documents().items()})
    return files


def load_schema(name: str) -> dict[str, Any]:
    """The checked-in schema ``name`` (e.g. ``manifest.schema.json``), parsed."""
    with open(SCHEMA_DIR / name, encoding="utf-8") as f:
        result: dict[str, Any] = json.load(f)
    return result
