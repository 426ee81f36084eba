"""``ckptspec demo``: train, kill with SIGKILL, resume, finish, validate, and prove bit-exactness.

Two runs of the reference trainer on 2 CPU ranks (launched with torch's elastic launcher):
an uninterrupted one, and one whose every process the demo kills with SIGKILL from outside once
rank 0 reports the crash step (as a node failure would), then resumed from its latest committed
checkpoint. Both run directories are validated with ``--deep`` checks, and their final
checkpoints are compared tensor by tensor; the demo passes only if they are identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ckptspec.exit_codes import EXIT_ERROR, EXIT_FAIL, EXIT_OK

TRAIN_ARGS = [
    "--steps",
    "12",
    "--save-every",
    "3",
    "--eval-every",
    "3",
    "--accumulation-steps",
    "2",
    "--global-batch-size",
    "8",
    "--best-metric",
    "loss",
    "--keep-last",
    "2",
    "--device",
    "cpu",
]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``demo``."""
    parser.add_argument(
        "--output-dir",
        default="demo-output",
        help="where the two run directories go (default: demo-output)",
    )
    parser.add_argument("--nproc", type=int, default=2, help="ranks per run (default: 2)")
    parser.add_argument(
        "--kill-at-step",
        type=int,
        default=7,
        help="step after which the interrupted run is killed (default: 7)",
    )


FAILURE_TAIL_LINES = 30
"""How much of a failed phase's output the demo prints: enough for the failing rank's error."""


def launch(
    output_dir: Path, run_id: str, nproc: int, *extra: str, kill_at_step: int | None = None
) -> tuple[int, list[str], list[str]]:
    """Run the trainer under ``torch.distributed.run``; return its exit status, the progress
    lines and the last :data:`FAILURE_TAIL_LINES` lines of everything it printed. With
    ``kill_at_step``, every process of the job is killed by SIGKILL as soon as rank 0 reports that step."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "ckptspec.reference_impl.train",
        "--output-dir",
        str(output_dir),
        "--run-id",
        run_id,
        *TRAIN_ARGS,
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if kill_at_step is not None and line.startswith(f"train step {kill_at_step:5d}"):
            _kill_job(proc.pid)
            lines.append(f"crash step {kill_at_step:5d} | SIGKILL of every process of the job")
            break
    proc.stdout.close()
    proc.wait()
    keep = ("train ", "eval ", "ckpt ", "crash ", "resume ", "done ", "rank ", "error")
    return (
        proc.returncode,
        [line for line in lines if line.startswith(keep)],
        lines[-FAILURE_TAIL_LINES:],
    )


def _kill_job(launcher_pid: int) -> None:
    """SIGKILL the launcher's rank processes (each runs in its own session, so the launcher's
    process group does not reach them; they are its children), then the launcher."""
    for pid in [*_children(launcher_pid), launcher_pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc``)."""
    children: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(c) for c in f.read().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return children


def run(args: argparse.Namespace) -> int:
    """Run the demo; print a report; 0 when every check passed."""
    from ckptspec.diff_cmd import CannotCompare, compare
    from ckptspec.validator import validate_path

    out = Path(args.output_dir).resolve()
    for run_id in ("uninterrupted", "interrupted"):
        shutil.rmtree(out / run_id, ignore_errors=True)
    started = time.perf_counter()
    phases: list[tuple[str, str, tuple[str, ...], int | None]] = [
        ("uninterrupted", "uninterrupted", (), None),
        ("interrupted: killed", "interrupted", (), args.kill_at_step),
        ("interrupted: resumed", "interrupted", ("--resume", "auto"), None),
    ]
    report = []
    logs: dict[str, list[str]] = {}
    for title, run_id, extra, kill_at_step in phases:
        t0 = time.perf_counter()
        code, lines, tail = launch(out, run_id, args.nproc, *extra, kill_at_step=kill_at_step)
        print(f"== {title} (exit {code}, {time.perf_counter() - t0:.1f} s)")
        for line in lines:
            print(f"   {line}")
        logs.setdefault(run_id, []).extend(lines)
        if (kill_at_step is not None) == (code == 0):
            print(
                f"demo: phase '{title}' exited with {code}, which was not expected; the last lines it printed:",
                file=sys.stderr,
            )
            for line in tail:
                print(f"   | {line}", file=sys.stderr)
            return EXIT_ERROR

    def trajectory(
        run_id: str,
    ) -> dict[str, str]:  # step -> "loss | lr", the last time each step ran
        return {
            line.split("|")[0]: "|".join(line.split("|")[1:3])
            for line in logs[run_id]
            if line.startswith("train ")
        }

    report.append(
        (
            "losses and learning rates identical at every step, across the kill",
            trajectory("uninterrupted") == trajectory("interrupted"),
        )
    )
    for run_id in ("uninterrupted", "interrupted"):
        findings = validate_path(out / run_id, deep=True)
        for finding in findings:
            print(f"   {finding.line()}")
        report.append(
            (f"validate --deep {run_id}", not any(f.severity.value == "error" for f in findings))
        )
    final = "step-000000012"
    try:
        differences = compare(out / "uninterrupted" / final, out / "interrupted" / final)
    except CannotCompare as exc:
        print(f"demo: cannot compare the final checkpoints: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for line in differences[:20]:
        print(f"   {line}")
    report.append(
        (
            "final checkpoints bitwise identical (model, optimizer, scheduler, RNG, data position)",
            not differences,
        )
    )
    print(
        f"\nckptspec demo report ({args.nproc} CPU ranks, {time.perf_counter() - started:.1f} s, output in {out})"
    )
    for check, ok in report:
        print(f"  [{'PASS' if ok else 'FAIL'}] {check}")
    return EXIT_OK if all(ok for _, ok in report) else EXIT_FAIL
