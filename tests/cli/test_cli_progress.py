"""Item 6 of issue 24: `validate --deep` shows progress (bytes, files, rate) when stderr is a
terminal, and nothing in JSON or non-terminal output; the start-up stays torch- and tqdm-free."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "spec"
    / "examples"
    / "valid"
    / "checkpoint-xxh3"
    / "step-000000100"
)


def on_a_terminal(*argv: str, interrupt_when: bytes | None = None) -> tuple[int, str, str]:
    """Run ``ckptspec *argv`` with stderr on a pseudo-terminal, sending SIGINT once the terminal
    shows ``interrupt_when`` (if given); its exit status, stdout and what the terminal showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ckptspec", *argv],
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        if interrupt_when is not None and interrupt_when in shown:
            proc.send_signal(signal.SIGINT)
            interrupt_when = None
    out = proc.stdout.read() if proc.stdout else ""
    os.close(master)
    return proc.wait(timeout=300), out, shown.decode(errors="replace")


def test_deep_on_a_terminal_shows_bytes_files_and_rate() -> None:
    status, out, shown = on_a_terminal("validate", "--deep", str(EXAMPLE))
    assert status == 0 and out == ""
    assert "hashing step-000000100" in shown and " files" in shown and "B/s" in shown, shown


def test_deep_is_silent_off_a_terminal_and_in_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ckptspec", "validate", "--deep", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "hashing" not in done.stderr and done.stderr.count("\n") == 1
    status, out, shown = on_a_terminal("validate", "--deep", "--format", "json", str(EXAMPLE))
    assert status == 0 and json.loads(out)["verdict"] == "conformant" and "hashing" not in shown


def test_validate_imports_neither_torch_nor_tqdm_off_a_terminal() -> None:
    code = (
        "import sys; from ckptspec.cli import main; main(['validate', '--deep', sys.argv[1]]); "
        "print(sorted(m for m in ('torch', 'tqdm') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLE)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stderr
