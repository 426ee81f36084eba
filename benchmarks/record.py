"""Run every benchmark and rewrite the figures table of docs/benchmarks.md from what they printed.

    .venv/bin/python benchmarks/record.py            # or: make bench-record
    .venv/bin/python benchmarks/record.py --tiers    # also time the test tiers (make test-fast, ...)

Each benchmark prints, as its last line, ``RECORD {json}`` with its figures (ratios against a
baseline measured in the same run). This script runs them one after another, notes the load
average (``/proc/loadavg``, 1-minute) around each, and replaces the block between
``<!-- BEGIN GENERATED: benchmarks -->`` and ``<!-- END GENERATED -->`` in docs/benchmarks.md. With
``--tiers`` it also times the test tiers with ``make`` (the core tier alone takes minutes);
without it the tier rows keep their last recorded figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- BEGIN GENERATED: benchmarks -->", "<!-- END GENERATED -->"
TIERS = {"test-fast": "≤ 60 s", "test-core": "≤ 300 s", "test-frameworks": "—", "test-catch": "—"}


def load_average() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def run_benchmark(args: list[str]) -> tuple[dict[str, Any], str]:
    """The RECORD of ``benchmarks/<args>``, and the load averages before/after it."""
    before = load_average()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / args[0]), *args[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    sys.stdout.write(proc.stdout)
    records = [line for line in proc.stdout.splitlines() if line.startswith("RECORD ")]
    if proc.returncode != 0 or not records:
        raise SystemExit(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return json.loads(records[-1].removeprefix("RECORD ")), f"{before:.1f}–{load_average():.1f}"


def time_tier(target: str) -> tuple[float, str]:
    """Wall seconds of ``make <target>`` (which must pass), and the load averages around it."""
    before = load_average()
    started = time.perf_counter()
    subprocess.run(["make", target], cwd=ROOT, check=True)
    return time.perf_counter() - started, f"{before:.1f}–{load_average():.1f}"


def previous_tier_rows() -> dict[str, str]:
    """The tier rows of the current table, by make target (kept when tiers are not re-timed)."""
    text = PAGE.read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0] if BEGIN in text else ""
    return {
        m.group(1): line
        for line in block.splitlines()
        if (m := re.search(r"`make (test-[a-z]+)`", line))
    }


def table(
    validate: dict[str, Any],
    checkpoint: tuple[dict[str, Any], str],
    conformance: tuple[dict[str, Any], str],
    validate_load: str,
    tiers: dict[str, str],
) -> str:
    c, c_load = checkpoint
    q, q_load = conformance
    rows = [
        "| what | command | figure [load average] | bar |",
        "| --- | --- | --- | --- |",
        f"| `ckptspec validate` of a 10,000-file manifest, whole process, median of 7 | `python benchmarks/bench_validate.py` | "
        f"{validate['validate_10k_s']:.2f} s (interpreter start {validate['interpreter_start_s']:.2f} s) [{validate_load}] | ≤ 0.30 s |",
        f"| `--deep` throughput vs `sha256sum`, 256 MiB: SHA-256 / xxh3-128 file digests | same | "
        f"{validate['deep_vs_sha256sum_sha256']:.0%} / {validate['deep_vs_sha256sum_xxh3-128']:.0%} [{validate_load}] | ≥ 70 % |",
        f"| save vs raw `dcp.save`, {c['state_mb']:.0f} MB model+optimizer, {c['ranks']} ranks, median of 7 paired rounds | "
        f"`python benchmarks/bench_checkpoint.py --repeats 7` | {c['save_ratio']:.2f}× [{c_load}] | ≤ 1.10× |",
        f"| resume, every file's digest verified as read, vs raw `dcp.load` | same | {c['load_ratio']:.2f}× [{c_load}] | ≤ 1.15× |",
        f"| resume with `--verify size` vs raw `dcp.load` | same | {c['load_size_ratio']:.2f}× [{c_load}] | — |",
        f"| async save: training blocked / a synchronous save | same | {c['async_blocked']:.1%} [{c_load}] | ≤ 15 % |",
        f"| conformance quick profile vs the reference adapter, `-n 2` ({q['phases']} phases) | "
        f"`python benchmarks/bench_conformance.py` | {q['wall_s']:.1f} s [{q_load}] | ≤ 90 s |",
    ]
    rows += [tiers[t] for t in TIERS if t in tiers]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiers", action="store_true", help="also time the test tiers (minutes)")
    args = parser.parse_args()
    validate, validate_load = run_benchmark(["bench_validate.py"])
    checkpoint = run_benchmark(["bench_checkpoint.py", "--repeats", "7"])
    conformance = run_benchmark(["bench_conformance.py"])
    tiers = previous_tier_rows()
    if args.tiers:
        for target, bar in TIERS.items():
            seconds, load = time_tier(target)
            tiers[target] = (
                f"| test tier `{target}` | `make {target}` | {seconds:.0f} s [{load}] | {bar} |"
            )
    text = PAGE.read_text()
    if BEGIN not in text or END not in text.split(BEGIN, 1)[1]:
        raise SystemExit(f"docs/benchmarks.md lacks the {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    PAGE.write_text(
        f"{head}{BEGIN}\n{table(validate, checkpoint, conformance, validate_load, tiers)}\n{END}{tail}"
    )
    print(
        f"docs/benchmarks.md: figures table rewritten ({'with' if args.tiers else 'without'} the test tiers)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
