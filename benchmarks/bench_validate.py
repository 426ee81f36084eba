"""Benchmark of ``ckptspec validate``: whole-process time on checkpoints of 1,000, 10,000 and
100,000 files (``--files``; the slope between sizes says whether it stays linear), and
``--deep`` throughput compared with ``sha256sum`` on the same files, for manifests whose file
digests are SHA-256 (the same work as ``sha256sum``) and xxh3-128 (the writers' default).

    python benchmarks/bench_validate.py [--runs 7] [--files 1000,10000,100000] [--deep-mb 256]

Targets (printed, not asserted): median wall time of ``ckptspec validate`` on the 10,000-file
checkpoint <= 0.30 s, on 100,000 files <= 10x that; ``--deep`` throughput >= 70% of ``sha256sum``'s. The last line is
``RECORD {json}`` for ``benchmarks/record.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ckptspec import SPEC_VERSION
from ckptspec.digest import json_digest
from ckptspec.file_digest import digest_bytes

CONFIG = {"accumulation_steps": 1, "global_batch_size": 64, "dataset": "bench", "model": "bench"}


def _manifest(files: list[tuple[str, bytes, int]], world: int, algorithm: str) -> dict[str, Any]:
    """A valid manifest for ``files`` = (path, bytes, rank), grouped into components by top directory."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, data, rank in files:
        groups.setdefault(path.split("/")[0], []).append(
            {
                "path": path,
                "size": len(data),
                "digest": digest_bytes(data, algorithm),
                "ranks": [rank],
            }
        )
    kinds = {
        "model": ("model", "sharded", "dcp", True),
        "optim": ("optimizer", "sharded", "dcp", True),
        "rng": ("rng", "per_rank", "torch_weights_only", False),
        "data": ("data_position", "per_rank", "json", False),
    }
    components = []
    for name, entries in groups.items():
        kind, sharing, fmt, reshardable = kinds[name]
        components.append(
            {
                "name": name,
                "kind": kind,
                "sharing": sharing,
                "format": fmt,
                "reshardable": reshardable,
                "files": entries,
            }
        )
    return {
        "spec_version": SPEC_VERSION,
        "producer": {"name": "bench", "version": "0"},
        "run_id": "bench",
        "step": 10,
        "created_at": "2026-01-01T00:00:00Z",
        "topology": {
            "world_size": world,
            "device_type": "cpu",
            "mesh": [{"name": "dp_shard", "size": world}],
        },
        "progress": {
            "global_step": 10,
            "epoch": 0,
            "batches_in_epoch": 10,
            "samples_in_epoch": 640,
            "samples_seen": 640,
            "accumulation_steps": 1,
        },
        "config": {"values": CONFIG, "sha256": json_digest(CONFIG)},
        "components": components,
        "resumable": True,
    }


def build(
    directory: Path, files: list[tuple[str, bytes, int]], world: int, algorithm: str = "xxh3-128"
) -> None:
    """Write ``files`` and their manifest (``algorithm`` file digests) into the checkpoint directory ``directory``."""
    for path, data, _ in files:
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (directory / "manifest.json").write_text(json.dumps(_manifest(files, world, algorithm)))


def many_small_files(count: int, world: int) -> list[tuple[str, bytes, int]]:
    """``count`` files of 64 bytes: per-rank RNG and data position, the rest model and optimizer shards."""
    files = [(f"rng/rank-{r:05d}.pt", os.urandom(64), r) for r in range(world)]
    files += [(f"data/rank-{r:05d}.json", os.urandom(64), r) for r in range(world)]
    for i in range(count - len(files)):
        component = "model" if i % 2 == 0 else "optim"
        files.append(
            (f"{component}/{i // 100:03d}/__{i % world}_{i}.distcp", os.urandom(64), i % world)
        )
    return files


def big_files(total_mb: int, world: int) -> list[tuple[str, bytes, int]]:
    """About ``total_mb`` MiB in 16 MiB model/optimizer shards, plus small per-rank files."""
    files = [(f"rng/rank-{r:05d}.pt", os.urandom(1024), r) for r in range(world)]
    files += [(f"data/rank-{r:05d}.json", os.urandom(1024), r) for r in range(world)]
    for i in range(max(2, total_mb // 16)):
        files.append(
            (
                f"{'model' if i % 2 == 0 else 'optim'}/__{i % world}_{i}.distcp",
                os.urandom(16 * 1024 * 1024),
                i % world,
            )
        )
    return files


def timed(command: list[str], runs: int) -> list[float]:
    """Wall times of ``runs`` executions of ``command`` (which must succeed)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(
                f"{' '.join(command)} failed ({result.returncode}): {result.stderr.decode()[-2000:]}"
            )
    return times


def main() -> None:
    """Build the checkpoints, time the validator and sha256sum, print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=7, help="runs per measurement (median reported)"
    )
    parser.add_argument(
        "--files",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1_000, 10_000, 100_000],
        help="comma-separated file counts of the metadata benchmark (default 1000,10000,100000)",
    )
    parser.add_argument(
        "--deep-mb", type=int, default=256, help="MiB hashed in the --deep benchmark"
    )
    args = parser.parse_args()
    script = Path(sys.executable).with_name(
        "ckptspec"
    )  # the installed console script, as users run it
    ckptspec = (
        [str(script), "validate"]
        if script.exists()
        else [sys.executable, "-m", "ckptspec", "validate"]
    )
    root = Path(tempfile.mkdtemp(prefix="ckptspec-bench-"))
    try:
        baseline = statistics.median(timed([sys.executable, "-c", "pass"], args.runs))
        record: dict[str, float] = {"interpreter_start_s": baseline}
        for count in args.files:
            small = root / f"small-{count}" / "step-000000010"
            build(small, many_small_files(count, world=8), world=8)
            times = timed(ckptspec + [str(small)], args.runs)
            median = statistics.median(times)
            print(
                f"validate, {count} files, no --deep: median {median:.3f} s over {args.runs} runs "
                f"(min {min(times):.3f}, max {max(times):.3f}; bare interpreter start {baseline:.3f} s)"
            )
            record[f"validate_{count}_s"] = median
            shutil.rmtree(small.parent)
        if 10_000 in args.files:
            ten_k = record["validate_10000_s"]
            print(
                f"10,000 files: {ten_k:.3f} s; target <= 0.30 s: {'met' if ten_k <= 0.3 else 'NOT met'}"
            )
            if 100_000 in args.files:
                scale = record["validate_100000_s"] / ten_k
                print(
                    f"100,000 files / 10,000 files: {scale:.1f}x; target <= 10x: {'met' if scale <= 10 else 'NOT met'}"
                )

        files = big_files(args.deep_mb, world=8)
        total = sum(len(d) for _, d, _ in files)
        mib = total / 2**20
        for algorithm in ("sha256", "xxh3-128"):
            big = root / algorithm / "step-000000010"
            build(big, files, world=8, algorithm=algorithm)
            paths = [str(big / p) for p, _, _ in files]
            timed(["sha256sum", *paths], 1)  # warm the page cache for both tools
            shallow = statistics.median(timed(ckptspec + [str(big)], args.runs))
            deep = statistics.median(timed(ckptspec + ["--deep", str(big)], args.runs))
            reference = statistics.median(timed(["sha256sum", *paths], args.runs))
            hashing = max(deep - shallow, 1e-9)
            print(
                f"--deep, {algorithm} digests, on {mib:.0f} MiB in {len(files)} files: validate --deep {deep:.3f} s "
                f"({mib / deep:.0f} MiB/s whole process; {mib / hashing:.0f} MiB/s hashing, after subtracting the "
                f"{shallow:.3f} s of a run without --deep); sha256sum {reference:.3f} s ({mib / reference:.0f} MiB/s); "
                f"throughput vs sha256sum {reference / deep:.0%} whole process (target >= 70%: {'met' if reference / deep >= 0.7 else 'NOT met'})"
            )
            record[f"deep_vs_sha256sum_{algorithm}"] = reference / deep
        print("RECORD " + json.dumps(record))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
