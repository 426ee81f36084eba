"""The conformance suite run as a user runs it, for the tests that judge a whole run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_suite(tmp_path: Path, *options: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``pytest --pyargs ckptspec.conformance.tests`` with ``options`` in a subprocess started in
    ``tmp_path`` (outside the repository; its temporary files under ``tmp_path/bt``), on one thread,
    with no adapter chosen by the environment (``CKPTSPEC_ADAPTER``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("CKPTSPEC_ADAPTER", None)
    command = [sys.executable, "-m", "pytest", "--pyargs", "ckptspec.conformance.tests"]
    command += ["-p", "no:cacheprovider", "-q", *options, "--basetemp", str(tmp_path / "bt")]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_conformance_cli(
    tmp_path: Path, *argv: str, env: dict[str, str] | None = None, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``ckptspec conformance`` with ``argv`` (its own options, then ``--`` and pytest's) in a
    subprocess started in ``tmp_path``, its temporary files under ``tmp_path/bt``; ``env`` defaults
    to this process's environment on one thread."""
    env = env if env is not None else {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "ckptspec", "conformance", *argv]
    command += [] if "--" in argv else ["--"]
    command += ["--basetemp", str(tmp_path / "bt")]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )
