"""`ckptspec validate` as a command: exit codes, output formats, --strict, garbage input, and
that it writes nothing and never imports torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from spec_cases import EXAMPLES

from ckptspec.cli import main

VALID_RUN = EXAMPLES / "valid" / "run-complete" / "demo-run"
INVALID_CKPT = EXAMPLES / "invalid" / "layout" / "file-size-mismatch" / "step-000000100"
WARNING_CKPT = EXAMPLES / "invalid" / "layout" / "unlisted-file" / "step-000000100"


def validate(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["validate", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_conformant_run_exits_0(capsys) -> None:
    status, out, err = validate(capsys, VALID_RUN, "--deep")
    assert status == 0 and out == "" and "conformant" in err


def test_each_finding_is_one_line(capsys) -> None:
    status, out, _ = validate(capsys, INVALID_CKPT)
    assert status == 1
    (line,) = out.splitlines()
    assert line.startswith(
        f"FILE_SIZE_MISMATCH LAYOUT-5 {INVALID_CKPT}/rng/rank-00000.pt#/components/2/files/0: error: "
    )


def test_json_output(capsys) -> None:
    status, out, _ = validate(capsys, INVALID_CKPT, VALID_RUN, "--format", "json")
    document = json.loads(out)
    assert status == 1 and document["verdict"] == "not_conformant"
    assert document["counts"] == {"error": 1, "warning": 0}
    assert [t["kind"] for t in document["targets"]] == ["checkpoint", "run"]
    assert (
        document["findings"][0]["code"] == "FILE_SIZE_MISMATCH"
        and document["findings"][0]["requirement"] == "LAYOUT-5"
    )


def test_strict_turns_warnings_into_errors(capsys) -> None:
    assert validate(capsys, WARNING_CKPT)[0] == 0
    status, out, _ = validate(capsys, WARNING_CKPT, "--strict")
    assert status == 1 and "UNLISTED_FILE LAYOUT-7" in out and ": error: " in out


@pytest.mark.parametrize("args", [[], ["--format", "xml", "."], ["/nonexistent/ckptspec"]])
def test_could_not_check_exits_2(capsys, args: list[str]) -> None:
    assert validate(capsys, *args)[0] == 2


def test_nonexistent_path_next_to_a_valid_one_still_exits_2(capsys) -> None:
    status, out, err = validate(capsys, VALID_RUN, "/nonexistent/ckptspec", "--format", "json")
    assert status == 2 and json.loads(out)["verdict"] == "not_checked"


def _garbage(tmp_path: Path) -> list[Path]:
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    junk = tmp_path / "junk"
    (junk / "a" / "b").mkdir(parents=True)
    (junk / "a" / "b" / "c.txt").write_text("hello")
    (junk / "step-000000001").mkdir()
    (junk / "step-000000001" / "manifest.json").write_bytes(b"\x00\x01\x02")
    (junk / "run.json").write_text("[" * 100_000)
    named_run = tmp_path / "run.json"
    named_run.write_text('{"spec_version": "1.0"}')
    return [binary, junk, named_run]


def test_garbage_gives_findings_not_tracebacks(tmp_path: Path) -> None:
    """Garbage named as what it claims to be (a run directory, `run.json`) gets findings; a binary
    file that claims nothing cannot be checked (exit 2). Neither gets a traceback."""
    binary, junk, named_run = _garbage(tmp_path)
    for path, expected in ((binary, 2), (junk, 1), (named_run, 1)):
        result = subprocess.run(
            [sys.executable, "-m", "ckptspec", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == expected, (path, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout


def _snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            snap[os.path.relpath(os.path.join(dirpath, name), root)] = (
                st.st_mode,
                st.st_size,
                st.st_mtime_ns,
            )
    st = os.lstat(root)
    snap["."] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return snap


def test_validate_writes_nothing(tmp_path: Path, capsys) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(EXAMPLES, tree, symlinks=True)
    _garbage(tree)
    before = _snapshot(tree)
    targets = [
        tree / "valid" / "run-complete" / "demo-run",
        *sorted((tree / "invalid").glob("*/*/step-*")),
        tree / "junk",
        tree / "binary.bin",
    ]
    validate(capsys, *targets, "--deep")
    assert _snapshot(tree) == before


def test_validate_does_not_import_torch() -> None:
    code = (
        "import sys; from ckptspec.cli import main; "
        f"status = main(['validate', '--deep', {str(VALID_RUN)!r}]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(status)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_undecodable_file_names_are_printed_not_fatal(tmp_path: Path) -> None:
    checkpoint = tmp_path / "step-000000100"
    shutil.copytree(EXAMPLES / "valid" / "checkpoint-world2" / "step-000000100", checkpoint)
    with open(os.fsencode(checkpoint) + b"/\xff\xfe.bin", "wb") as f:
        f.write(b"x")
    result = subprocess.run(
        [sys.executable, "-m", "ckptspec", "validate", "--strict", str(checkpoint)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        result.returncode == 1
        and "UNLISTED_FILE" in result.stdout
        and "Traceback" not in result.stderr
    )
