"""The conformance-suite adapter of the reference trainer (``ckptspec.reference_impl.adapter:ReferenceAdapter``).

To check that the suite catches a bug, subclass :class:`~ckptspec.reference_impl.trainer.Trainer`
(or its ``policy_class`` / ``commit_class`` / ``loader_class`` / ``evaluator_class``), override the one method
that holds the behaviour, and point ``trainer_class`` of an adapter subclass at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any, ClassVar

import torch

from ckptspec.checkpointing.distributed import DistContext
from ckptspec.conformance.adapter import (
    CAPABILITIES,
    Capability,
    RankContext,
    ScenarioConfig,
    StepRecord,
    TrainerAdapter,
)
from ckptspec.file_digest import ALGORITHMS
from ckptspec.reference_impl.config import TrainConfig
from ckptspec.reference_impl.trainer import Trainer

_SCENARIO_FIELDS = {
    "output_dir": "output_dir",
    "run_id": "run_id",
    "seed": "seed",
    "total_steps": "steps",
    "accumulation_steps": "accumulation_steps",
    "global_batch_size": "global_batch_size",
    "save_every": "save_every",
    "eval_every": "eval_every",
    "keep_last": "keep_last",
    "best_metric": "best_metric",
    "best_mode": "best_mode",
    "best_min_delta": "best_min_delta",
    "elastic": "elastic",
    "defer_grad_sync": "defer_grad_sync",
    "async_save": "async_save",
    "digest_algorithm": "digest_algorithm",
}


def train_config(config: ScenarioConfig, eval_set_size: int) -> TrainConfig:
    """The trainer config of a scenario; ``config.extra`` may set any other :class:`TrainConfig` field."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(config.extra) - known)
    if unknown:
        raise ValueError(f"unknown reference-trainer settings in ScenarioConfig.extra: {unknown}")
    values: dict[str, Any] = {
        ours: getattr(config, theirs) for theirs, ours in _SCENARIO_FIELDS.items()
    }
    if config.digest_algorithm is None:  # the trainer's default
        del values["digest_algorithm"]
    if config.steps_per_epoch is not None:
        values["dataset_size"] = config.steps_per_epoch * config.global_batch_size
    return TrainConfig(**values, eval_set_size=eval_set_size, **config.extra)


class ReferenceAdapter(TrainerAdapter):
    """The reference trainer as a :class:`~ckptspec.conformance.adapter.TrainerAdapter` (a ckptspec writer)."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        CAPABILITIES
    )  # every one the suite knows
    eval_set_size: ClassVar[int] = 24
    digest_algorithms: ClassVar[tuple[str, ...]] = tuple(ALGORITHMS)
    trainer_class: ClassVar[type[Trainer]] = Trainer

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        device = torch.device(ctx.device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist_ctx = DistContext(
            rank=ctx.rank,
            world_size=ctx.world_size,
            local_rank=ctx.local_rank,
            device=device,
            local_world_size=ctx.local_world_size,
        )
        self.trainer = self.trainer_class(train_config(config, self.eval_set_size), dist_ctx)

    @property
    def step(self) -> int:
        return self.trainer.step

    def resume(self, checkpoint: str | None = None) -> int:
        return self.trainer.resume(checkpoint)

    def train(self, steps: int) -> list[StepRecord]:
        return self.trainer.train(steps)

    def train_micro(self, count: int) -> None:
        self.trainer.train_micro(count)

    def save(self) -> str:
        path = self.trainer.save()
        self.trainer.finish_saves()
        return str(path)

    def fit(self) -> list[StepRecord]:
        self.trainer.resume(None)
        return self.trainer.fit()

    def evaluate(self, samples: Sequence[int]) -> dict[str, float] | None:
        return self.trainer.evaluate(samples)

    def full_state(self) -> dict[str, Any]:
        return self.trainer.full_state()

    def close(self) -> None:
        self.trainer.finish_saves()
        self.trainer.policy.close()


class ReferenceAsyncAdapter(ReferenceAdapter):
    """The reference trainer with asynchronous saves (``async_save``): in ``fit()`` every save
    returns once the state is in host memory, and its writes, digests, agreement and commit run
    on a background thread while training goes on (a crash, a fault or a resume can meet a save in
    flight). ``save()`` waits for the commit, as the protocol asks. It does not declare the
    ``async_save`` capability: it cannot save synchronously, so the suite does not cross the two
    modes on it."""

    capabilities: ClassVar[frozenset[Capability]] = ReferenceAdapter.capabilities - {"async_save"}

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        super().__init__(replace(config, async_save=True), ctx)
