"""`inspect --format json` and `diff --format json` print documents valid against their published,
versioned output schemas (spec/schemas/inspect-output.schema.json, diff-output.schema.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from spec_cases import EXAMPLES, needs_torch

from ckptspec.cli import main
from ckptspec.schemas import load_schema

INSPECT = Draft202012Validator(load_schema("inspect-output.schema.json"))
DIFF = Draft202012Validator(load_schema("diff-output.schema.json"))


def run_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, dict]:
    status = main([*map(str, args), "--format", "json"])
    return status, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "target, status, kind",
    [
        (EXAMPLES / "valid" / "checkpoint-world2" / "step-000000100", 0, "checkpoint"),
        (EXAMPLES / "valid" / "manifest-world2" / "manifest.json", 0, "manifest"),
        (EXAMPLES / "valid" / "run-complete" / "demo-run", 0, "run"),
        (EXAMPLES / "valid" / "run-complete" / "demo-run" / "run.json", 0, "run_index"),
        (EXAMPLES / "invalid" / "manifest" / "json-syntax" / "manifest.json", 1, "manifest"),
        (Path("/nonexistent/ckptspec"), 2, None),
    ],
    ids=lambda v: str(v).rsplit("/", 2)[-2] if isinstance(v, Path) else str(v),
)
def test_inspect_json_matches_its_schema(
    capsys: pytest.CaptureFixture[str], target: Path, status: int, kind: str | None
) -> None:
    got, document = run_json(capsys, "inspect", target)
    assert got == status
    INSPECT.validate(document)
    assert (
        document["output"] == "ckptspec-inspect"
        and document["output_version"] == 1
        and document["kind"] == kind
    )
    assert document["summarised"] == (status == 0) and (document["error"] is None) == (status != 2)
    if kind == "run":
        assert [c["step"] for c in document["checkpoints"]] == [100, 200, 300] and document[
            "staging"
        ]
    if status == 1:
        assert document["findings"] and document["manifest"] is None


def test_foreign_directory_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    status, document = run_json(capsys, "inspect", tmp_path)
    INSPECT.validate(document)
    assert (
        status == 1
        and document["kind"] == "unknown"
        and document["files"] == [{"path": "notes.txt", "size": 2}]
    )


@needs_torch
def test_diff_json_when_it_cannot_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a missing path fails before torch is needed
    status, document = run_json(capsys, "diff", tmp_path / "a", tmp_path / "b")
    DIFF.validate(document)
    assert (
        status == 2
        and document["verdict"] == "not_compared"
        and "not a directory" in document["error"]
    )


def test_schemas_reject_a_wrong_output_version() -> None:
    document = {
        "output": "ckptspec-diff",
        "output_version": 1,
        "tool": "x",
        "a": "a",
        "b": "b",
        "ignored": [],
        "compared": "all",
        "verdict": "identical",
        "differences": [],
        "error": None,
    }
    assert not DIFF.is_valid(document)
    assert DIFF.is_valid({**document, "output_version": 2})
