"""The reference trainer's configuration: a training job, its LR schedule and what is fingerprinted."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ckptspec.file_digest import DEFAULT_ALGORITHM
from ckptspec.reference_impl.model import ModelArgs


@dataclass
class TrainConfig:
    """A training job. Fingerprinted (must not change across a resume): accumulation steps,
    global batch size, dataset identity (seed, size), model architecture, LR schedule."""

    output_dir: str
    run_id: str
    steps: int = 20
    save_every: int = 0  # 0: save only at the final step
    eval_every: int = 0  # 0: never evaluate in fit()
    accumulation_steps: int = 1
    global_batch_size: int = 12
    seed: int = 0
    lr: float = 3e-3
    warmup_steps: int = 2
    decay_steps: int | None = None  # cosine horizon; defaults to `steps`
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    keep_last: int | None = None
    best_metric: str | None = None
    best_mode: str = "min"
    best_min_delta: float = 0.0
    elastic: bool = False
    verify: str = "full"  # integrity check of a resume: "full" (digests) or "size"
    digest_algorithm: str = DEFAULT_ALGORITHM  # of the files listed in the manifests written
    async_save: bool = False
    defer_grad_sync: bool = True  # no gradient reduce-scatter on non-final micro-steps
    dataset_size: int = 768
    eval_set_size: int = 24
    model: ModelArgs = field(default_factory=ModelArgs)
    init_from: str | None = (
        None  # start a new run from this export's (or checkpoint's) model weights
    )


def lr_factor(config: TrainConfig, step: int) -> float:
    """The LR multiplier after ``step`` optimizer steps: linear warmup to 1 over ``warmup_steps``,
    then cosine decay to ``min_lr_ratio`` at ``decay_steps`` (default ``steps``), then flat."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    horizon = max(1, (config.decay_steps or config.steps) - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / horizon)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (
        1 + math.cos(math.pi * progress)
    )


def fingerprint_values(
    config: TrainConfig, model_args: ModelArgs, dataset_identity: dict[str, Any]
) -> dict[str, Any]:
    """The fingerprinted settings of a :class:`TrainConfig`.

    The learning-rate schedule is fingerprinted too: resuming with another schedule would not
    continue the same run.
    """
    return {
        "accumulation_steps": config.accumulation_steps,
        "global_batch_size": config.global_batch_size,
        "dataset": dataset_identity,
        "model": asdict(model_args),
        "schedule": {
            "lr": config.lr,
            "warmup_steps": config.warmup_steps,
            "decay_steps": config.decay_steps or config.steps,
            "min_lr_ratio": config.min_lr_ratio,
            "weight_decay": config.weight_decay,
            "grad_clip": config.grad_clip,
        },
    }
