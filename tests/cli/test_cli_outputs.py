"""Items 7 and 9 of issue 24: `validate --format json|sarif|junit|github` as a user runs them, the
JSON against its published schema (with `output_version`), `diff --format json` with numbers as
numbers, and `diff` errors as one line without torch's traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from jsonschema import Draft202012Validator

from ckptspec.schemas import load_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "spec" / "examples"
VALID_RUN = EXAMPLES / "valid" / "run-complete" / "demo-run"
BAD_CKPT = EXAMPLES / "invalid" / "layout" / "file-size-mismatch" / "step-000000100"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def ckptspec(*argv: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ckptspec", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )


def _schema_invalid_manifest() -> Path:
    """An example manifest whose findings point at a value inside it (a pointer with a line)."""
    for manifest in sorted((EXAMPLES / "invalid" / "manifest").glob("*/manifest.json")):
        if manifest.is_file():
            document = json.loads(ckptspec("validate", "--format", "json", manifest).stdout)
            if any(
                f["pointer"] and f["pointer"].count("/") >= 2 and f["path"] == str(manifest)
                for f in document["findings"]
            ):
                return manifest
    raise AssertionError("no example manifest with a nested pointer")


def test_validate_json_matches_its_schema_for_each_verdict(tmp_path: Path) -> None:
    schema = Draft202012Validator(load_schema("validate-output.schema.json"))
    for target, status, verdict in [
        (VALID_RUN, 0, "conformant"),
        (BAD_CKPT, 1, "not_conformant"),
        (tmp_path / "nothing", 2, "not_checked"),
    ]:
        done = ckptspec("validate", "--format", "json", target)
        document = json.loads(done.stdout)
        schema.validate(document)
        assert done.returncode == status and document["verdict"] == verdict
        assert document["output"] == "ckptspec-validate" and document["output_version"] == 1


def test_sarif_has_a_result_per_finding_on_the_line_of_its_pointer() -> None:
    manifest = _schema_invalid_manifest()
    findings = json.loads(ckptspec("validate", "--format", "json", manifest).stdout)["findings"]
    done = ckptspec("validate", "--format", "sarif", manifest)
    assert done.returncode == 1
    log = json.loads(done.stdout)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert [(r["ruleId"], rules[r["ruleIndex"]]) for r in run["results"]] == [
        (f["code"], f["code"]) for f in findings
    ]
    lines = manifest.read_text().splitlines()
    located = [
        (f, r)
        for f, r in zip(findings, run["results"])
        if "region" in r["locations"][0]["physicalLocation"]
    ]
    assert located
    for (
        f,
        r,
    ) in (
        located
    ):  # the line holds the last key of the pointer (or, for an array item, a value of it)
        line = lines[r["locations"][0]["physicalLocation"]["region"]["startLine"] - 1]
        last = f["pointer"].rsplit("/", 1)[-1]
        assert f'"{last}"' in line or last.isdigit(), (f, line)


def test_sarif_reports_a_path_it_cannot_check_as_a_failed_invocation(tmp_path: Path) -> None:
    log = json.loads(ckptspec("validate", "--format", "sarif", tmp_path / "nothing").stdout)
    (invocation,) = log["runs"][0]["invocations"]
    assert (
        invocation["executionSuccessful"] is False
        and "no such file" in invocation["toolExecutionNotifications"][0]["message"]["text"]
    )


def test_junit_has_a_case_per_path_failing_with_its_errors(tmp_path: Path) -> None:
    done = ckptspec("validate", "--format", "junit", VALID_RUN, BAD_CKPT, tmp_path / "nothing")
    assert done.returncode == 2
    suite = ElementTree.fromstring(done.stdout).find("testsuite")
    assert suite is not None and (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
    ) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert not list(cases[str(VALID_RUN)])
    failure = cases[str(BAD_CKPT)].find("failure")
    assert (
        failure is not None
        and failure.get("type") == "FILE_SIZE_MISMATCH"
        and "LAYOUT-5" in (failure.text or "")
    )
    assert cases[str(tmp_path / "nothing")].find("error") is not None


def test_github_format_is_one_annotation_per_finding_with_file_and_line() -> None:
    manifest = _schema_invalid_manifest()
    done = ckptspec("validate", "--format", "github", manifest, BAD_CKPT)
    lines = done.stdout.splitlines()
    assert (
        done.returncode == 1 and lines and all(line.startswith("::error file=") for line in lines)
    )
    assert any(f"file={manifest},line=" in line for line in lines)
    assert any(
        f"file={BAD_CKPT}/rng/rank-00000.pt,title=FILE_SIZE_MISMATCH (LAYOUT-5)::" in line
        for line in lines
    )


@pytest.fixture(scope="module")
def dcp_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two plain DCP directories written by torch: `w` zeros in A, 0.5 in B; `n` equal."""
    torch = pytest.importorskip("torch")
    import torch.distributed.checkpoint as dcp

    root = tmp_path_factory.mktemp("dcp")
    for name, value in (("a", 0.0), ("b", 0.5)):
        dcp.save(
            {"w": torch.full((2, 3), value), "n": torch.arange(4)},
            checkpoint_id=str(root / name),
            no_dist=True,
        )
    return root / "a", root / "b"


def test_diff_json_puts_numbers_in_numbers(dcp_pair: tuple[Path, Path]) -> None:
    done = ckptspec("diff", "--format", "json", *dcp_pair)
    document = json.loads(done.stdout)
    Draft202012Validator(load_schema("diff-output.schema.json")).validate(document)
    assert done.returncode == 1 and document["output_version"] == 2
    (difference,) = document["differences"]
    assert difference["name"] == "state/w" and difference["max_abs_difference"] == 0.5
    assert (difference["dtype_a"], difference["shape_a"], difference["shape_b"]) == (
        "float32",
        [2, 3],
        [2, 3],
    )


def test_diff_of_an_unreadable_payload_is_one_line_without_a_traceback(
    dcp_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(dcp_pair[1], broken)
    payload = next(broken.glob("*.distcp"))
    payload.write_bytes(b"\0" * payload.stat().st_size)  # same size, unreadable content
    done = ckptspec("diff", dcp_pair[0], broken)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("ckptspec diff: cannot compare: ") and len(line) < 400
    assert "Traceback" not in done.stderr and 'File "' not in done.stderr


def test_diff_beside_a_manifest_of_a_newer_minor_is_not_compared_without_a_traceback(
    dcp_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    """A manifest this reader cannot check (a newer minor's value): exit 2 with one message
    saying why, never a traceback."""
    import shutil

    newer = tmp_path / "newer"
    shutil.copytree(dcp_pair[1], newer)
    shutil.copy(
        EXAMPLES / "not-checked" / "newer-minor-enum-value" / "manifest.json",
        newer / "manifest.json",
    )
    done = ckptspec("diff", "--format", "json", dcp_pair[0], newer)
    assert "Traceback" not in done.stderr, done.stderr
    document = json.loads(done.stdout)
    assert (
        done.returncode == 2
        and document["verdict"] == "not_compared"
        and "newer minor" in document["error"]
    )
