"""Checkpoint cost curves of the reference manager against raw DCP and a bare host copy.

    python benchmarks/bench_checkpoint.py [--ranks 2] [--repeats 5] [--warmup 1] [--sizes 64,512,2048] [--output-dir /tmp/ckptspec-bench]

Relaunches itself under ``torch.distributed.run`` on ``--ranks`` CPU ranks. For each size in
``--sizes`` (MB of model + optimizer state, all ranks together; default about 64 MB, 512 MB and
2 GB) it builds a model of about that size and, in each of ``--repeats`` rounds (order
alternating), measures on the same state: raw ``dcp.save`` of the model and optimizer state dicts vs the
manager's full commit (DCP payloads + JSON + RNG + fsync + file digests, xxh3-128 by default +
manifest + rename + run.json); raw ``dcp.load`` vs the trainer's resume (the validator's checks,
drift and world-size checks, then the loads, every file's digest checked as it is read; also
with size-only verification); and how long an ``--async-save`` blocks the training loop vs a
synchronous save and vs one bare copy of the state into preallocated host buffers (the floor
of an asynchronous save on CPU). Per size it prints each figure as a ratio to its baseline from
the same run; across sizes, the fixed cost (intercept) and per-byte cost (slope) of a least-squares
line through the medians of save, verified resume and async blocked time, and of their
baselines. The last line is ``RECORD {json}`` for ``benchmarks/record.py``. ``--warmup`` rounds run first and are not counted (they
allocate the page cache and the async stager's reusable host buffers). Rank 0 prints medians
and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ranks", type=int, default=2, help="CPU ranks (torchrun --nproc-per-node)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--warmup", type=int, default=1, help="uncounted rounds before the measured ones"
    )
    p.add_argument("--output-dir", default="/tmp/ckptspec-bench")
    p.add_argument(
        "--sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[64, 512, 2048],
        help="comma-separated MB of model + optimizer state (default 64,512,2048)",
    )
    return p.parse_args()


def model_for(megabytes: int) -> tuple[int, int]:
    """``(dim, vocab_size)`` of a one-layer model whose parameters and two AdamW moments take
    about ``megabytes`` MB: about 20 * dim**2 float32 parameters with a vocabulary of 4 * dim."""
    dim = max(64, round((megabytes * 1e6 / (3 * 4 * 20)) ** 0.5 / 64) * 64)
    return dim, 4 * dim


def host_tensors(state: object) -> list:
    """Every tensor of a (nested) state dict, local shards of DTensors."""
    import torch
    from torch.distributed.tensor import DTensor

    if isinstance(state, DTensor):
        return [state.to_local()]
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in host_tensors(v)]
    if isinstance(state, (list, tuple)):
        return [t for v in state for t in host_tensors(v)]
    return []


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Intercept and slope of the least-squares line through ``(xs, ys)``."""
    if len(xs) < 2:
        return float("nan"), float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def timed(fn) -> float:
    import torch.distributed as dist

    dist.barrier()
    start = time.perf_counter()
    fn()
    dist.barrier()
    return time.perf_counter() - start


def bench(args: argparse.Namespace, megabytes: int) -> dict[str, Any] | None:
    """Rank 0: the figures of one size; other ranks: None."""
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    from ckptspec.checkpointing import CommitProtocol, RunPolicy, init_distributed
    from ckptspec.reference_impl.config import TrainConfig
    from ckptspec.reference_impl.model import ModelArgs
    from ckptspec.reference_impl.trainer import Trainer

    ctx = init_distributed("cpu")
    out = Path(args.output_dir) / f"{megabytes}mb"
    dim, vocab_size = model_for(megabytes)
    model = ModelArgs(vocab_size=vocab_size, dim=dim, n_layers=1, n_heads=8, seq_len=8)
    config = TrainConfig(
        output_dir=str(out),
        run_id="bench",
        steps=100,
        global_batch_size=2 * ctx.world_size,
        model=model,
        async_save=True,
        dataset_size=64,
        eval_set_size=1,
    )
    trainer = Trainer(config, ctx)
    trainer.train(1)  # real optimizer state
    state_bytes = sum(
        t.numel() * t.element_size() for t in trainer.save_request().sharded["model"][1].values()
    )
    state_bytes *= 3  # parameters + two AdamW moments
    if ctx.rank == 0:
        shutil.rmtree(out, ignore_errors=True)
        print(
            f"world size {ctx.world_size}, model + optimizer state {state_bytes / 1e6:.0f} MB, "
            f"{args.repeats} paired rounds after {args.warmup} warm-up"
        )
    dist.barrier()

    times: dict[str, list[float]] = {
        k: []
        for k in (
            "raw_save",
            "mgr_save",
            "raw_load",
            "mgr_load",
            "mgr_load_size_only",
            "async_block",
            "async_total",
            "bare_copy",
        )
    }
    # The floor of an asynchronous save's blocked time: one copy of every tensor of the state
    # into host buffers allocated once.
    live = host_tensors({n: s for n, (_, s) in trainer.save_request().sharded.items()})
    buffers = [torch.empty_like(t, device="cpu") for t in live]

    def bare_copy() -> None:
        for buffer, tensor in zip(buffers, live):
            buffer.copy_(tensor)

    # One asynchronous manager for every round, as in training: its stagers keep their host buffers.
    async_manager = CommitProtocol(
        RunPolicy(out / "async", "async", ctx), async_groups=trainer.commit.async_groups
    )
    for i in range(args.warmup + args.repeats):
        counted = i >= args.warmup

        def record(name: str, seconds: float) -> None:
            if counted:
                times[name].append(seconds)

        raw_dir = out / f"raw-{i}"
        manager = CommitProtocol(RunPolicy(out / f"run-{i}", f"run-{i}", ctx))

        def raw_save() -> None:
            dcp.save(get_model_state_dict(trainer.model), checkpoint_id=raw_dir / "model")
            dcp.save(
                get_optimizer_state_dict(trainer.model, trainer.optimizer),
                checkpoint_id=raw_dir / "optimizer",
            )

        def mgr_save() -> None:
            manager.save(trainer.save_request())

        def raw_load() -> None:
            model_sd = get_model_state_dict(trainer.model)
            dcp.load(model_sd, checkpoint_id=raw_dir / "model")
            set_model_state_dict(trainer.model, model_sd)
            optim_sd = get_optimizer_state_dict(trainer.model, trainer.optimizer)
            dcp.load(optim_sd, checkpoint_id=raw_dir / "optimizer")
            set_optimizer_state_dict(trainer.model, trainer.optimizer, optim_sd)

        def mgr_load() -> None:
            trainer.resume(manager.policy.checkpoint_path(trainer.step))

        def mgr_load_size_only() -> None:  # the same without SHA-256 verification (--verify size)
            trainer.loader.verify = "size"
            mgr_load()
            trainer.loader.verify = "full"

        pairs = [("raw_save", raw_save), ("mgr_save", mgr_save)]
        for name, fn in pairs if i % 2 == 0 else pairs[::-1]:
            record(name, timed(fn))
        pairs = [
            ("raw_load", raw_load),
            ("mgr_load", mgr_load),
            ("mgr_load_size_only", mgr_load_size_only),
        ]
        for name, fn in pairs if i % 2 == 0 else pairs[::-1]:
            record(name, timed(fn))

        reference = (
            {k: v.detach().clone() for k, v in trainer.full_state()["model"].items()}
            if i == 0
            else None
        )
        blocked = timed(lambda: async_manager.save_async(trainer.save_request()))
        if reference is not None:  # training goes on while the background write runs
            trainer.train(1)
        record("async_block", blocked)
        record("bare_copy", timed(bare_copy))
        record("async_total", blocked + timed(async_manager.wait))
        if reference is not None:
            saved = async_manager.policy.checkpoint_path(trainer.step - 1)
            probe = Trainer(
                config.__class__(**{**config.__dict__, "async_save": False, "run_id": "probe"}), ctx
            )
            probe.load_weights(saved)
            loaded = probe.full_state()["model"]
            ok = all(torch.equal(loaded[k], v) for k, v in reference.items())
            if ctx.rank == 0:
                print(
                    f"async save captured the state at save time despite training during the write: {ok}"
                )
            trainer.resume(
                async_manager.policy.checkpoint_path(trainer.step - 1)
            )  # back to the benchmarked state
            del probe
        if ctx.rank == 0:
            for path in (raw_dir, out / f"run-{i}", *(out / "async").glob("step-*")):
                shutil.rmtree(path, ignore_errors=True)
        dist.barrier()

    if ctx.rank != 0:
        return None
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'':24s}{'median s':>10s}   all rounds")
    for k, v in times.items():
        print(f"{k:24s}{med[k]:10.3f}   " + " ".join(f"{x:.3f}" for x in v))

    def paired(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    figures = {
        "state_mb": state_bytes / 1e6,
        "save_ratio": paired("mgr_save", "raw_save"),
        "load_ratio": paired("mgr_load", "raw_load"),
        "load_size_ratio": paired("mgr_load_size_only", "raw_load"),
        "async_vs_copy": paired("async_block", "bare_copy"),
        "async_blocked": med["async_block"] / med["mgr_save"],
        "medians": med,
    }
    print(
        f"{state_bytes / 1e6:.0f} MB: save / raw dcp.save {figures['save_ratio']:.3f}x; "
        f"verified resume / raw dcp.load {figures['load_ratio']:.3f}x (--verify size "
        f"{figures['load_size_ratio']:.3f}x); async blocked / bare host copy "
        f"{figures['async_vs_copy']:.2f}x ({figures['async_blocked']:.1%} of a synchronous save)"
    )
    return figures


def report(per_size: list[dict[str, Any]], ranks: int) -> None:
    """Print the fixed and per-byte costs across sizes, the bars, and the RECORD line."""
    xs = [f["state_mb"] / 1e3 for f in per_size]  # GB
    curves = {}
    for name in ("raw_save", "mgr_save", "raw_load", "mgr_load", "bare_copy", "async_block"):
        intercept, slope = fit(xs, [f["medians"][name] for f in per_size])
        curves[name] = {"fixed_s": intercept, "s_per_gb": slope}
        print(f"{name:24s} fixed {intercept * 1e3:8.1f} ms   per GB {slope:7.3f} s")
    largest, smallest = per_size[-1], per_size[0]
    copies = ", ".join(f"{f['async_vs_copy']:.2f}x" for f in per_size)
    print(
        f"bars: verified resume <= 1.10x at 2 GB ({largest['state_mb']:.0f} MB: {largest['load_ratio']:.2f}x), "
        f"<= 1.25x at 64 MB ({smallest['state_mb']:.0f} MB: {smallest['load_ratio']:.2f}x); async blocked <= 1.5x "
        f"a bare copy at every size ({copies}); "
        f"save <= 1.05x at 2 GB ({largest['state_mb']:.0f} MB: {largest['save_ratio']:.2f}x)"
    )
    print(
        "RECORD "
        + json.dumps(
            {
                "sizes": [{k: v for k, v in f.items() if k != "medians"} for f in per_size],
                "curves": curves,
                "ranks": ranks,
            }
        )
    )


def main() -> None:
    args = parse()
    if "LOCAL_RANK" not in os.environ:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={args.ranks}",
            __file__,
            *sys.argv[1:],
        ]
        sys.exit(subprocess.call(command, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    import torch.distributed as dist

    from ckptspec.checkpointing.distributed import exit_process

    per_size = [bench(args, megabytes) for megabytes in args.sizes]
    if dist.get_rank() == 0:
        report([f for f in per_size if f is not None], dist.get_world_size())
    exit_process(0)


if __name__ == "__main__":
    main()
