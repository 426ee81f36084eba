"""Command line of the reference trainer.

    torchrun --standalone --nproc-per-node 2 -m ckptspec.reference_impl.train \\
        --output-dir runs --run-id demo --steps 20 --save-every 5 --eval-every 5

Also runs as a single process without a launcher. Exit status: 0 done; 2 refused (a typed
checkpoint error: a resume that fails its checks, a run directory claimed by another writer,
a save mid-accumulation); 3 a save failed (nothing was committed, or its commit could not be made
durable). Rank 0 prints the error on one line; no rank prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import MISSING, fields
from pathlib import Path

import torch.distributed as dist

from ckptspec.checkpointing.commit import SaveError
from ckptspec.checkpointing.distributed import exit_process, init_distributed
from ckptspec.digest import state_digest
from ckptspec.errors import CheckpointError
from ckptspec.file_digest import ALGORITHMS
from ckptspec.reference_impl.config import TrainConfig
from ckptspec.reference_impl.trainer import Trainer

EXIT_REFUSED = 2
"""Exit status of a refusal: a typed :class:`~ckptspec.errors.CheckpointError`."""
EXIT_SAVE_FAILED = 3
"""Exit status of a failed save (:class:`~ckptspec.checkpointing.commit.SaveError`)."""


def config_defaults() -> dict[str, object]:
    """The defaults of :class:`TrainConfig`'s fields: the command line's defaults come from there."""
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def build_parser() -> argparse.ArgumentParser:
    """The trainer's command line; options named like a :class:`TrainConfig` field default to it."""
    p = argparse.ArgumentParser(
        prog="python -m ckptspec.reference_impl.train",
        description="Train the ckptspec reference model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--output-dir", required=True, help="directory holding run directories")
    p.add_argument("--run-id", required=True, help="name of this run's directory")
    p.add_argument("--steps", type=int, help="train until this global step")
    p.add_argument("--save-every", type=int, help="save every N steps (always at the last step)")
    p.add_argument("--eval-every", type=int, help="evaluate every N steps (0: never)")
    p.add_argument("--accumulation-steps", type=int)
    p.add_argument(
        "--global-batch-size", type=int, help="samples per optimizer step over all ranks"
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--decay-steps", type=int, help="cosine horizon (default: --steps)")
    p.add_argument(
        "--resume", default="auto", help="auto (latest, if any), none, or a checkpoint directory"
    )
    p.add_argument(
        "--init-from",
        default=None,
        help="a new run starts from this export's (or checkpoint's) model weights; "
        "a resume ignores it (its SHA-256 is fingerprinted)",
    )
    p.add_argument(
        "--keep-last", type=int, help="retention: keep the N newest checkpoints (plus best)"
    )
    p.add_argument(
        "--best-metric",
        default=None,
        help="track the best checkpoint by this eval metric (loss, perplexity, accuracy)",
    )
    p.add_argument("--best-mode", choices=("min", "max"))
    p.add_argument("--best-min-delta", type=float)
    p.add_argument(
        "--elastic",
        action="store_true",
        help="on a world-size change, re-derive rank-local state (RNG)",
    )
    p.add_argument(
        "--verify",
        choices=("full", "size"),
        help="integrity check of a resume: digests or sizes only",
    )
    p.add_argument(
        "--digest-algorithm",
        choices=tuple(ALGORITHMS),
        help="file digest algorithm of the manifests written",
    )
    p.add_argument(
        "--async-save",
        action="store_true",
        help="write sharded state in the background (DCP async_save)",
    )
    p.add_argument(
        "--no-defer-grad-sync", action="store_true", help="reduce gradients on every micro-step"
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--eval-checkpoint",
        default=None,
        help="only load this checkpoint's weights, evaluate, print metrics as JSON",
    )
    p.add_argument(
        "--step-log",
        default=None,
        help="rank 0 appends one JSON line per step (step, loss, lr, digests)",
    )
    p.set_defaults(**config_defaults())
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    config.defer_grad_sync = not args.no_defer_grad_sync
    return config


def _step_logger(trainer: Trainer, path: str | None):
    """Per-step JSON lines (rank 0): loss, lr, and digests of the full parameters and optimizer state."""
    if path is None:
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)

    def log(record) -> None:
        state = trainer.full_state()  # collective
        if trainer.ctx.rank == 0:
            line = {
                "step": record.step,
                "loss": record.loss,
                "lr": record.lr,
                "model_sha256": state_digest(state["model"]),
                "optimizer_sha256": state_digest(state["optimizer"]),
            }
            with open(path, "a") as f:
                f.write(json.dumps(line) + "\n")

    return log


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ctx = init_distributed(args.device)
    try:
        trainer = Trainer(config_from_args(args), ctx)
        if args.eval_checkpoint:
            step = trainer.load_weights(args.eval_checkpoint)
            metrics = trainer.evaluate_full()
            trainer.log(
                json.dumps({"step": step, "world_size": ctx.world_size, "metrics": metrics})
            )
            return 0
        if args.resume != "none":
            step = trainer.resume(None if args.resume == "auto" else args.resume)
            if step:
                trainer.log(f"resume step {step:5d} | from {trainer.resumed_from}")
        if args.init_from and trainer.step == 0:
            source_step = trainer.init_weights(args.init_from)
            trainer.log(
                f"init  step {trainer.step:5d} | weights of {args.init_from} (step {source_step})"
            )
        trainer.step_callback = _step_logger(trainer, args.step_log)
        trainer.fit()
        trainer.log(f"done  step {trainer.step:5d}")
        return 0
    except (CheckpointError, SaveError) as exc:  # raised on every rank alike: rank 0 reports it
        if ctx.rank == 0:
            print(f"error: {type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return EXIT_REFUSED if isinstance(exc, CheckpointError) else EXIT_SAVE_FAILED
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    exit_process(main())
