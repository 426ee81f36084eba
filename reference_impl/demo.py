"""``ckptspec demo``: train, kill with SIGKILL, resume, finish, validate, and prove bit-exactness.

Two runs of the reference trainer on 2 CPU ranks (launched with torch's elastic launcher):
an uninterrupted one, and one killed by SIGKILL mid-run and resumed from its latest committed
checkpoint. Both run directories are validated with ``--deep`` checks, and their final
checkpoints are compared tensor by tensor; the demo passes only if they are identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ckptspec.cli import EXIT_ERROR, EXIT_FAIL, EXIT_OK

TRAIN_ARGS = [
    "--steps", "12", "--save-every", "3", "--eval-every", "3", "--accumulation-steps", "2",
    "--global-batch-size", "8", "--best-metric", "loss", "--keep-last", "2", "--device", "cpu",
]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``demo``."""
    parser.add_argument("--output-dir", default="demo-output", help="where the two run directories go (default: demo-output)")
    parser.add_argument("--nproc", type=int, default=2, help="ranks per run (default: 2)")
    parser.add_argument("--crash-at-step", type=int, default=7, help="step at which the interrupted run is killed (default: 7)")


def launch(output_dir: Path, run_id: str, nproc: int, *extra: str) -> tuple[int, list[str]]:
    """Run the trainer under ``torch.distributed.run``; return its exit status and rank 0's progress lines."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", "ckptspec.reference_impl.train", "--output-dir", str(output_dir), "--run-id", run_id, *TRAIN_ARGS, *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    keep = ("train ", "eval ", "ckpt ", "crash ", "resume ", "done ", "rank ")
    return proc.returncode, [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(keep)]


def run(args: argparse.Namespace) -> int:
    """Run the demo; print a report; 0 when every check passed."""
    from ckptspec.diff_cmd import CannotCompare, compare
    from ckptspec.validator import validate_path

    out = Path(args.output_dir).resolve()
    for run_id in ("uninterrupted", "interrupted"):
        shutil.rmtree(out / run_id, ignore_errors=True)
    started = time.perf_counter()
    phases = [
        ("uninterrupted", "uninterrupted", ()),
        ("interrupted: killed", "interrupted", ("--crash-at-step", str(args.crash_at_step))),
        ("interrupted: resumed", "interrupted", ("--resume", "auto")),
    ]
    report = []
    logs: dict[str, list[str]] = {}
    for title, run_id, extra in phases:
        t0 = time.perf_counter()
        code, lines = launch(out, run_id, args.nproc, *extra)
        print(f"== {title} (exit {code}, {time.perf_counter() - t0:.1f} s)")
        for line in lines:
            print(f"   {line}")
        logs.setdefault(run_id, []).extend(lines)
        killed = "--crash-at-step" in extra
        if killed == (code == 0):
            print(f"demo: phase '{title}' exited with {code}, which was not expected", file=sys.stderr)
            return EXIT_ERROR
    def trajectory(run_id: str) -> dict[str, str]:  # step -> "loss | lr", the last time each step ran
        return {line.split("|")[0]: "|".join(line.split("|")[1:3]) for line in logs[run_id] if line.startswith("train ")}

    report.append(("losses and learning rates identical at every step, across the kill", trajectory("uninterrupted") == trajectory("interrupted")))
    for run_id in ("uninterrupted", "interrupted"):
        findings = validate_path(out / run_id, deep=True)
        for finding in findings:
            print(f"   {finding.line()}")
        report.append((f"validate --deep {run_id}", not any(f.severity.value == "error" for f in findings)))
    final = "step-000000012"
    try:
        differences = compare(out / "uninterrupted" / final, out / "interrupted" / final)
    except CannotCompare as exc:
        print(f"demo: cannot compare the final checkpoints: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for line in differences[:20]:
        print(f"   {line}")
    report.append(("final checkpoints bitwise identical (model, optimizer, scheduler, RNG, data position)", not differences))
    print(f"\nckptspec demo report ({args.nproc} CPU ranks, {time.perf_counter() - started:.1f} s, output in {out})")
    for check, ok in report:
        print(f"  [{'PASS' if ok else 'FAIL'}] {check}")
    return EXIT_OK if all(ok for _, ok in report) else EXIT_FAIL
