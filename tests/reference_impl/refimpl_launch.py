"""Helpers of the reference-trainer tests: launch phases in fresh processes and read results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("refimpl_worker.py")
CRASHING_TRAIN = Path(__file__).with_name("crashing_train.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
COMMON = ["--device", "cpu", "--global-batch-size", "12", "--seed", "3"]


def _launcher(nproc: int) -> list[str]:
    if nproc == 1:  # one process without a launcher: the trainer creates its own world of one
        return [sys.executable]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "--monitor-interval=0.1",
    ]


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a phase (in ``cwd``); once more if the launcher lost a race for its free port to another
    process (the phase then never started, so repeating it is safe)."""
    proc = subprocess.run(command, env=ENV, cwd=cwd, capture_output=True, text=True, timeout=240)
    if proc.returncode != 0 and any(
        s in proc.stderr + proc.stdout for s in ("EADDRINUSE", "Address already in use")
    ):
        proc = subprocess.run(
            command, env=ENV, cwd=cwd, capture_output=True, text=True, timeout=240
        )
    return proc


def train(
    nproc: int, output_dir: Path, run_id: str, *args: str, expect: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """Run the trainer CLI; check its exit status (``expect=None``: any non-zero status). With a
    ``--crash-*`` option it runs under crashing_train.py, which injects that crash."""
    entry = (
        [str(CRASHING_TRAIN)]
        if any(a.startswith("--crash-") for a in args)
        else ["-m", "ckptspec.reference_impl.train"]
    )
    command = [
        *_launcher(nproc),
        *entry,
        "--output-dir",
        str(output_dir),
        "--run-id",
        run_id,
        *COMMON,
        *args,
    ]
    proc = _run(command)
    ok = proc.returncode != 0 if expect is None else proc.returncode == expect
    assert ok, (
        f"exit {proc.returncode}, expected {expect if expect is not None else 'non-zero'}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    return proc


def program(nproc: int, script: Path) -> subprocess.CompletedProcess[str]:
    """Run the Python program ``script`` on ``nproc`` ranks, in its own directory."""
    return _run([*_launcher(nproc), str(script)], cwd=script.parent)


def worker(nproc: int, out: Path, **scenarios: dict[str, Any]) -> list[dict[str, Any]]:
    """Run refimpl_worker.py's ``scenarios`` (name=params, in order) in one set of ``nproc``
    fresh ranks; return each rank's results by scenario name."""
    out.mkdir(parents=True, exist_ok=True)
    command = [*_launcher(nproc), str(WORKER), str(out), json.dumps(scenarios)]
    proc = _run(command)
    assert proc.returncode == 0, (
        f"worker {list(scenarios)} failed ({proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


def step_log(path: Path) -> dict[int, dict[str, Any]]:
    """Per-step records of a --step-log file; a re-run step keeps its last record."""
    return {rec["step"]: rec for rec in map(json.loads, path.read_text().splitlines())}


def snapshot(run_dir: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of everything under ``run_dir``: detects any write."""
    return {
        str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
    }


def manifest(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / "manifest.json").read_text())


def assert_valid(*paths: Path) -> None:
    """Every path passes ``ckptspec validate --deep`` with no error."""
    from ckptspec.validator import validate_path

    for path in paths:
        errors = [f.line() for f in validate_path(path, deep=True) if f.severity.value == "error"]
        assert not errors, "\n".join(errors)


def assert_identical(a: Path, b: Path) -> None:
    """``ckptspec diff`` finds no difference (model, optimizer, scheduler, RNG, data position...)."""
    from ckptspec.diff_cmd import compare

    differences = compare(a, b)
    assert not differences, "\n".join(differences[:20])
