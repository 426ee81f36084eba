"""Item 1 of issue 24: a command that needs torch or pytest, run where they are not installed,
says so in one line with the exact install command and exits 2 (no traceback); the commands
that need neither keep working there."""

from __future__ import annotations

from pathlib import Path

import pytest
from without_modules import run_without

from ckptspec.cli import COMMANDS, INSTALL_HINTS

EXAMPLE = Path(__file__).resolve().parents[2] / "spec" / "examples" / "valid"


def _one_line_hint(done, command: str, extra: str, missing: str) -> None:
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"ckptspec {command}: needs ") and missing in line
    assert line.endswith(f"install with: {INSTALL_HINTS[extra]}")
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize(
    ("argv", "extra"),
    [
        (["diff", "a", "b"], "reference"),
        (["export", "a", "b"], "reference"),
        (["demo", "--output-dir", "x"], "reference"),
        (["conformance"], "conformance"),
    ],
)
def test_a_command_that_needs_torch_says_how_to_install_it(
    argv: list[str], extra: str, tmp_path: Path
) -> None:
    _one_line_hint(run_without(["torch"], argv, tmp_path), argv[0], extra, "torch")
    assert not (tmp_path / "x").exists()  # demo started nothing


def test_conformance_without_pytest_names_pytest_and_the_conformance_extra(tmp_path: Path) -> None:
    _one_line_hint(
        run_without(["pytest", "hypothesis"], ["conformance"], tmp_path),
        "conformance",
        "conformance",
        "pytest, hypothesis",
    )


def test_the_conformance_extra_brings_what_the_suite_imports() -> None:
    import tomllib

    extras = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())[
        "project"
    ]["optional-dependencies"]
    names = {
        r.split(">")[0].split("=")[0].split("[")[0]
        for r in extras["conformance"] + extras["reference"]
    }
    assert {"pytest", "hypothesis", "numpy"} <= names and "ckptspec[reference]" in extras[
        "conformance"
    ]
    assert (
        set(COMMANDS["conformance"].needs) - {"torch"} <= names
    )  # torch: installed by the user, see the hint


def test_validate_inspect_and_help_work_without_torch(tmp_path: Path) -> None:
    run = EXAMPLE / "run-complete" / "demo-run"
    assert run_without(["torch"], ["validate", str(run)], tmp_path / "v").returncode == 0
    assert run_without(["torch"], ["inspect", str(run)], tmp_path / "i").returncode == 0
    helped = run_without(["torch"], ["diff", "--help"], tmp_path / "h")
    assert helped.returncode == 0 and "usage: ckptspec diff" in helped.stdout
