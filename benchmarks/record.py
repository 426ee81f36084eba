"""Run every benchmark and rewrite the figures table of docs/benchmarks.md from what they printed.

    .venv/bin/python benchmarks/record.py            # or: make bench-record
    .venv/bin/python benchmarks/record.py --tiers    # also time the test tiers (make test-fast, ...)
    .venv/bin/python benchmarks/record.py --sizes 64,512 --repeats 3   # a shorter checkpoint curve

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
    checkpoint_args: list[str],
) -> str:
    c, c_load = checkpoint
    q, q_load = conformance
    counts = sorted(int(k.split("_")[1]) for k in validate if re.fullmatch(r"validate_\d+_s", k))
    rows = [
        "| what | command | figure [load average] | bar |",
        "| --- | --- | --- | --- |",
        f"| `ckptspec validate` of a manifest of {', '.join(f'{n:,}' for n in counts)} files, whole process, median of 7 | "
        f"`python benchmarks/bench_validate.py` | "
        + " / ".join(f"{validate[f'validate_{n}_s']:.2f} s" for n in counts)
        + f" (interpreter start {validate['interpreter_start_s']:.2f} s) [{validate_load}] | 10k ≤ 0.30 s, 100k ≤ 10× 10k |",
        f"| `--deep` throughput vs `sha256sum`, 256 MiB: SHA-256 / xxh3-128 file digests | same | "
        f"{validate['deep_vs_sha256sum_sha256']:.0%} / {validate['deep_vs_sha256sum_xxh3-128']:.0%} [{validate_load}] | ≥ 70 % |",
    ]
    command = f"`python benchmarks/bench_checkpoint.py {' '.join(checkpoint_args)}`"
    for size in c["sizes"]:
        mb = f"{size['state_mb']:.0f} MB"
        rows += [
            f"| {mb} model+optimizer, {c['ranks']} ranks: save vs raw `dcp.save` | {command} | {size['save_ratio']:.2f}× [{c_load}] | ≤ 1.05× at 2 GB |",
            f"| {mb}: resume, every file's digest verified, vs raw `dcp.load` (`--verify size`) | same | "
            f"{size['load_ratio']:.2f}× ({size['load_size_ratio']:.2f}×) [{c_load}] | ≤ 1.25× at 64 MB, ≤ 1.10× at 2 GB |",
            f"| {mb}: async save, training blocked vs one bare host copy of the state (vs a synchronous save) | same | "
            f"{size['async_vs_copy']:.2f}× ({size['async_blocked']:.1%}) [{c_load}] | ≤ 1.5× |",
        ]
    for name, curve in c["curves"].items():
        rows.append(
            f"| cost curve `{name}`: fixed cost, per-GB cost (least squares across sizes) | same | "
            f"{curve['fixed_s'] * 1e3:.0f} ms + {curve['s_per_gb']:.2f} s/GB [{c_load}] | — |"
        )
    rows.append(
        f"| conformance quick profile vs the reference adapter, `-n 2` ({q['phases']} phases) | "
        f"`python benchmarks/bench_conformance.py` | {q['wall_s']:.1f} s [{q_load}] | ≤ 90 s |"
    )
    rows += [tiers[t] for t in TIERS if t in tiers]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiers", action="store_true", help="also time the test tiers (minutes)")
    parser.add_argument(
        "--sizes", default="64,512,2048", help="state sizes of the checkpoint benchmark, MB"
    )
    parser.add_argument("--repeats", default="7", help="rounds of the checkpoint benchmark")
    args = parser.parse_args()
    validate, validate_load = run_benchmark(["bench_validate.py"])
    checkpoint_args = ["--repeats", args.repeats, "--sizes", args.sizes]
    checkpoint = run_benchmark(["bench_checkpoint.py", *checkpoint_args])
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
        f"{head}{BEGIN}\n{table(validate, checkpoint, conformance, validate_load, tiers, checkpoint_args)}\n{END}{tail}"
    )
    print(
        f"docs/benchmarks.md: figures table rewritten ({'with' if args.tiers else 'without'} the test tiers)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
