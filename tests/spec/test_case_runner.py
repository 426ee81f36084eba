"""The language-neutral case runner (spec/examples/run_cases.py) passes `ckptspec validate` on
every example case, run as any other implementation would be, and fails an implementation that
gets cases wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spec_cases import CASES, EXAMPLES

RUNNER = EXAMPLES / "run_cases.py"


def run_cases(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=timeout
    )


def test_ckptspec_validate_passes_every_case() -> None:
    done = run_cases(
        "--deep-flag=--deep", "--jobs", "2", "--", sys.executable, "-m", "ckptspec", "validate"
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    assert f"1..{len(CASES)}\n# {len(CASES)} passed, 0 failed" in done.stdout
    assert done.stdout.count("\nok ") + done.stdout.startswith("ok ") == len(CASES)


def test_an_implementation_that_reports_nothing_fails_every_case_with_codes(tmp_path: Path) -> None:
    silent = tmp_path / "silent.py"
    silent.write_text("import sys\nsys.exit(0)\n")
    done = run_cases("--", sys.executable, str(silent))
    expected_failures = sum(
        1 for c in CASES if c.spec["codes"] or c.spec["verdict"] != "conformant"
    )
    assert done.returncode == 1
    assert f"# {len(CASES) - expected_failures} passed, {expected_failures} failed" in done.stdout


def test_the_contract_arguments_and_environment(tmp_path: Path) -> None:
    """The target comes last, the deep flag just before it, and CKPTSPEC_DEEP says the same."""
    echo = tmp_path / "echo.py"
    echo.write_text(
        "import os, sys\nprint(sys.argv[1:], os.environ['CKPTSPEC_DEEP'], file=sys.stderr)\nsys.exit(3)\n"
    )
    deep_case = next(c for c in CASES if c.spec["deep"] and "materialize" not in c.spec)
    done = run_cases("--deep-flag=-D", "--case", deep_case.id, "--", sys.executable, str(echo))
    target = str((deep_case.directory / deep_case.spec["path"]).absolute())
    assert done.returncode == 1 and f"['-D', {target!r}] 1" in done.stdout


def test_a_line_that_is_not_a_code_fails_the_case(tmp_path: Path) -> None:
    chatty = tmp_path / "chatty.py"
    chatty.write_text("print('checking...')\n")
    done = run_cases("--case", "valid/run-empty", "--", sys.executable, str(chatty))
    assert done.returncode == 1 and "does not start with a code" in done.stdout
