"""The fuzz targets of fuzz_targets.py run in CI for a bounded number of examples (a few seconds
each), each in a subprocess capped at a fixed address space and wall time: a memory blow-up or
a hang fails the test instead of exhausting the machine. Every crash the targets have found is
kept as an example case (spec/examples) or a regression test (test_hostile_inputs.py,
test_safe_dcp.py). ``CKPTSPEC_FUZZ_EXAMPLES`` raises the number of examples for a longer run."""

from __future__ import annotations

import importlib.util
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def run_target(name: str, memory: int, timeout: float) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(HERE),
        "CKPTSPEC_FUZZ_EXAMPLES": os.environ.get("CKPTSPEC_FUZZ_EXAMPLES", "200"),
    }
    return subprocess.run(
        [sys.executable, "-c", f"import fuzz_targets; fuzz_targets.{name}()"],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
        env=env,
        cwd=HERE,
    )


def test_fuzz_manifest_and_run_index_reader() -> None:
    result = run_target("fuzz_documents", memory=1 << 30, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_fuzz_dcp_metadata_reader() -> None:
    if importlib.util.find_spec("torch") is None:  # without importing torch into this process
        pytest.skip("torch is not installed")
    result = run_target("fuzz_dcp_metadata", memory=6 << 30, timeout=180)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
