"""Checkpoint overhead of the reference manager against raw DCP, and async-save blocking time.

    python benchmarks/bench_checkpoint.py [--ranks 2] [--repeats 5] [--warmup 1] [--output-dir /tmp/ckptspec-bench]

Relaunches itself under ``torch.distributed.run`` on ``--ranks`` CPU ranks. The model's
model + optimizer state is about 250 MB. In each of ``--repeats`` rounds (order alternating)
it measures, on the same state: raw ``dcp.save`` of the model and optimizer state dicts vs the
manager's full commit (DCP payloads + JSON + RNG + fsync + file digests, xxh3-128 by default +
manifest + rename + run.json); raw ``dcp.load`` vs the trainer's resume (the validator's checks,
drift and world-size checks, then the loads, every file's digest checked as it is read; also
with size-only verification); and how long an ``--async-save`` blocks the training loop vs a
synchronous save. The last line is ``RECORD {json}`` for ``benchmarks/record.py``. ``--warmup`` rounds run first and are not counted (they
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
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--vocab-size", type=int, default=4096)
    return p.parse_args()


def timed(fn) -> float:
    import torch.distributed as dist

    dist.barrier()
    start = time.perf_counter()
    fn()
    dist.barrier()
    return time.perf_counter() - start


def bench(args: argparse.Namespace) -> None:
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
    out = Path(args.output_dir)
    model = ModelArgs(vocab_size=args.vocab_size, dim=args.dim, n_layers=1, n_heads=8, seq_len=8)
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
        )
    }
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

    if ctx.rank == 0:
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{'':24s}{'median s':>10s}   all rounds")
        for k, v in times.items():
            print(f"{k:24s}{med[k]:10.3f}   " + " ".join(f"{x:.3f}" for x in v))
        ratio_save = statistics.median(m / r for m, r in zip(times["mgr_save"], times["raw_save"]))
        ratio_load = statistics.median(m / r for m, r in zip(times["mgr_load"], times["raw_load"]))
        print(
            f"manager save / raw dcp.save : {ratio_save:.3f}x (median of paired ratios; target <= 1.10)"
        )
        ratio_size = statistics.median(
            m / r for m, r in zip(times["mgr_load_size_only"], times["raw_load"])
        )
        print(
            f"manager load / raw dcp.load : {ratio_load:.3f}x (median of paired ratios; target <= 1.15)"
        )
        print(f"  same, --verify size       : {ratio_size:.3f}x (no file digests checked)")
        blocked = med["async_block"] / med["mgr_save"]
        print(f"async save blocks the loop for {blocked:.1%} of a synchronous save (target <= 15%)")
        print(
            "RECORD "
            + json.dumps(
                {
                    "save_ratio": ratio_save,
                    "load_ratio": ratio_load,
                    "load_size_ratio": ratio_size,
                    "async_blocked": blocked,
                    "state_mb": state_bytes / 1e6,
                    "ranks": ctx.world_size,
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
    from ckptspec.checkpointing.distributed import exit_process

    bench(args)
    exit_process(0)


if __name__ == "__main__":
    main()
