"""Wall time of the conformance suite against the reference adapter, and where it goes.

    .venv/bin/python benchmarks/bench_conformance.py                 # quick profile, -n 2
    .venv/bin/python benchmarks/bench_conformance.py --profile full
    .venv/bin/python benchmarks/bench_conformance.py --workers 0 --start-method spawn

Runs ``pytest --pyargs ckptspec.conformance.tests`` in a subprocess from a scratch directory,
then prints the wall time, the number of phases (process-group launches) and their total and
mean duration (from the harness's ``phases.log``), and the slowest tests (from the JSON report).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=("quick", "full"), default="quick")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (0: none)")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--start-method", choices=("forkserver", "spawn"), default="forkserver")
    parser.add_argument("--report", default=None, help="keep the JSON report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ckptspec-bench-") as scratch:
        report = Path(args.report).resolve() if args.report else Path(scratch) / "report.json"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "ckptspec.conformance.tests",
            "-q",
            "-p",
            "no:cacheprovider",
            "--ckptspec-profile",
            args.profile,
            "--ckptspec-report",
            str(report),
            "--basetemp",
            f"{scratch}/bt",
        ]
        if args.workers:
            cmd += ["-n", str(args.workers)]
        if args.adapter:
            cmd += ["--ckptspec-adapter", args.adapter]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "CKPTSPEC_START_METHOD": args.start_method}
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        phases = [
            float(line.split("s", 1)[0])
            for line in (Path(scratch) / "bt" / "ckptspec-shared" / "phases.log")
            .read_text()
            .splitlines()
        ]
        print(
            f"profile {args.profile}, workers {args.workers}, start method {args.start_method}: "
            f"wall {wall:.1f}s, exit {proc.returncode}"
        )
        print(
            f"phases: {len(phases)}, total {sum(phases):.1f}s, mean {sum(phases) / max(1, len(phases)):.2f}s, "
            f"max {max(phases, default=0):.2f}s"
        )
        if report.is_file():
            tests = sorted(json.loads(report.read_text())["tests"], key=lambda t: -t["duration_s"])
            for t in tests[:8]:
                print(f"  {t['duration_s']:6.1f}s  {t['outcome']:<7} {t['nodeid']}")
        if proc.returncode != 0:
            print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
        print(
            "RECORD " + json.dumps({"wall_s": wall, "phases": len(phases), "exit": proc.returncode})
        )
        return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
