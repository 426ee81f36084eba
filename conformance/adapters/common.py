"""The training job every framework adapter runs: data, model, schedule and evaluation.

Shared so that the adapters differ only in how each framework trains and checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from ckptspec.conformance.adapter import (
    CheckpointFormat,
    RankContext,
    ScenarioConfig,
    StepRecord,
    TrainerAdapter,
)
from ckptspec.conformance.examples.ddp_trainer import sample

STEPS_PER_EPOCH = (
    16  # without `epochs` in the scenario: the training set holds this many global batches
)


def framework_version(distribution: str) -> str:
    """``"<distribution> <installed version>"``, for an adapter's ``framework`` (shown in reports)."""
    return f"{distribution} {version(distribution)}"


def dataset_size(config: ScenarioConfig) -> int:
    """Training-set size: ``steps_per_epoch`` (or :data:`STEPS_PER_EPOCH`) global batches."""
    return (config.steps_per_epoch or STEPS_PER_EPOCH) * config.global_batch_size


def micro_batch(config: ScenarioConfig, world_size: int) -> int:
    """Samples per rank per micro-batch."""
    return config.global_batch_size // (world_size * config.accumulation_steps)


def warmup(step: int) -> float:
    """The LR factor of the schedule: linear warm-up over 3 steps, then constant."""
    return min(1.0, (step + 1) / 3)


def build_mlp() -> torch.nn.Module:
    """The model: an 8-32-1 MLP with dropout (initialised from the current global RNG)."""
    return torch.nn.Sequential(
        torch.nn.Linear(8, 32), torch.nn.Dropout(0.1), torch.nn.Tanh(), torch.nn.Linear(32, 1)
    )


class SyntheticRegression(Dataset):
    """The synthetic regression set of :func:`~ckptspec.conformance.examples.ddp_trainer.sample`;
    item ``i`` is ``(i, x, y)`` so that the loop can report which samples it consumed."""

    def __init__(self, seed: int, size: int) -> None:
        self.seed, self.size = seed, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        return (index, *sample(self.seed, index))


class TrainState:
    """The loop's counters (optimizer steps, micro-batches consumed), checkpointed as a stateful object."""

    def __init__(self) -> None:
        self.step = 0
        self.micro = 0

    def state_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return {"step": self.step, "micro": self.micro}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counters of :meth:`state_dict`."""
        self.step, self.micro = int(state["step"]), int(state["micro"])


def eval_sums(model: torch.nn.Module, seed: int, samples: Sequence[int]) -> torch.Tensor:
    """``[sum of squared errors, count]`` of ``model`` on this rank's eval ``samples`` (float64, not reduced)."""
    sums = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for i in samples:
            x, y = sample(seed, -1 - i)
            sums += torch.tensor(
                [float((model(x[None]) - y).pow(2).sum()), 1.0], dtype=torch.float64
            )
    return sums


class FrameworkAdapter(TrainerAdapter):
    """What the framework adapters share: the native format, the step counter, evaluation
    (an all-reduce of ``[sum of squared errors, count]`` on every rank, even with an empty shard)
    and the main loop. Subclasses set ``self.config``, ``self.ctx``, ``self.state`` and
    ``self.model`` and implement ``train``, ``save`` and ``resume``."""

    eval_set_size: ClassVar[int] = 16
    checkpoint_format: ClassVar[CheckpointFormat] = "native"
    config: ScenarioConfig
    ctx: RankContext
    state: TrainState
    model: torch.nn.Module

    @property
    def step(self) -> int:
        """Optimizer steps completed."""
        return self.state.step

    def evaluate(self, samples: Sequence[int]) -> dict[str, float] | None:
        """Global mean squared error over every rank's ``samples``; None when all shards are empty."""
        self.model.eval()
        sums = eval_sums(self.model, self.config.seed, samples)
        dist.all_reduce(sums)
        return None if sums[1] == 0 else {"mse": float(sums[0] / sums[1])}

    def fit(self) -> list[StepRecord]:
        """Resume from latest, train to ``total_steps``, evaluating every ``eval_every`` steps on
        the full eval set and saving every ``save_every`` steps and at the end."""
        self.resume(None)
        records: list[StepRecord] = []
        config, ctx = self.config, self.ctx
        while self.step < config.total_steps:
            records += self.train(1)
            if config.eval_every and self.step % config.eval_every == 0:
                self.evaluate(range(ctx.rank, self.eval_set_size, ctx.world_size))
            if self.step == config.total_steps or (
                config.save_every and self.step % config.save_every == 0
            ):
                self.save()
        return records
