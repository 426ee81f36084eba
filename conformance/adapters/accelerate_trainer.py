"""A Hugging Face Accelerate training loop, checkpointed with Accelerate's own ``save_state``/``load_state``.

The loop is written the way Accelerate's documentation writes one: ``Accelerator.prepare`` on the
model, AdamW, a warm-up ``LambdaLR`` and a shuffled ``DataLoader`` (seedable sampler), gradient
accumulation through ``accelerator.accumulate``, ``accelerator.backward``, automatic checkpoint
naming with ``total_limit`` for retention, ``register_for_checkpointing`` for the step counter, and
on resume ``load_state`` followed by ``skip_first_batches``. Run the suite with
``--ckptspec-adapter ckptspec.conformance.adapters.accelerate_trainer:Adapter``.

Glue the adapter adds to drive Accelerate inside the suite (everything else is Accelerate's):

- ``Accelerator(cpu=True)`` on a CPU host, so that Accelerate adopts the suite's gloo process group
  (with ``cpu=False`` and no GPU it would run as a single process).
- Before each save, ``project_configuration.iteration`` is set past the highest existing
  ``checkpoint_<n>`` folder: ``load_state`` does not restore it, so without this the first save after
  a resume collides with an existing folder and raises ``ValueError``.
- :meth:`Adapter.resume` with no checkpoint and an empty ``checkpoints/`` folder stays at step 0
  instead of calling ``load_state()``, which raises on an empty folder.
- :meth:`Adapter.committed_checkpoints` reads the step from each folder's registered train state
  (``custom_checkpoint_0.pkl``); Accelerate numbers its folders by save count, not by step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader

from ckptspec.conformance.adapter import Capability, RankContext, ScenarioConfig, StepRecord
from ckptspec.conformance.adapters.common import (
    FrameworkAdapter,
    SyntheticRegression,
    TrainState,
    build_mlp,
    dataset_size,
    framework_version,
    micro_batch,
    warmup,
)

CHECKPOINTS = "checkpoints"


class Adapter(FrameworkAdapter):
    """An Accelerate loop (DDP over gloo on CPU) as a conformance adapter (native format)."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {"eval", "accumulation", "epochs", "retention"}
    )
    framework: ClassVar[str] = framework_version("accelerate")

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        self.config, self.ctx = config, ctx
        self.run_dir = Path(config.output_dir) / config.run_id
        self.accelerator = Accelerator(
            cpu=ctx.device == "cpu",
            gradient_accumulation_steps=config.accumulation_steps,
            project_config=ProjectConfiguration(
                project_dir=str(self.run_dir),
                automatic_checkpoint_naming=True,
                total_limit=config.keep_last,
            ),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        set_seed(config.seed)
        self.dataset = SyntheticRegression(config.seed, dataset_size(config))
        loader = DataLoader(
            self.dataset, batch_size=micro_batch(config, ctx.world_size), shuffle=True
        )
        model = build_mlp()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup)
        self.model, self.optimizer, self.loader, self.scheduler = self.accelerator.prepare(
            model, optimizer, loader, scheduler
        )
        self.state = TrainState()
        self.accelerator.register_for_checkpointing(self.state)
        torch.manual_seed(config.seed * 7919 + ctx.rank)  # per-rank dropout stream
        self.batches: Any | None = (
            None  # the current epoch's iterator, created when training needs it
        )

    @staticmethod
    def committed_checkpoints(config: ScenarioConfig) -> dict[int, str]:
        """``{step: folder}`` of every ``checkpoints/checkpoint_<n>`` whose train state reads back."""
        found: dict[int, str] = {}
        folder = Path(config.output_dir) / config.run_id / CHECKPOINTS
        for path in sorted(folder.glob("checkpoint_*")) if folder.is_dir() else ():
            try:
                state = torch.load(path / "custom_checkpoint_0.pkl", weights_only=True)
            except (OSError, RuntimeError, EOFError):
                continue
            found[int(state["step"])] = str(path)
        return found

    def _batches_per_epoch(self) -> int:
        return len(self.loader)

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.batches is None:
            epoch, offset = divmod(self.state.micro, self._batches_per_epoch())
            self.loader.set_epoch(epoch)
            loader = (
                self.accelerator.skip_first_batches(self.loader, offset) if offset else self.loader
            )
            self.batches = iter(loader)
        try:
            batch = next(self.batches)
        except StopIteration:
            self.batches = None
            return self._next_batch()
        self.state.micro += 1
        return batch

    def train(self, steps: int) -> list[StepRecord]:
        records = []
        self.model.train()
        for _ in range(steps):
            mine: list[int] = []
            total = 0.0
            lr = self.scheduler.get_last_lr()[0]
            for _ in range(self.config.accumulation_steps):
                ids, x, y = self._next_batch()
                with self.accelerator.accumulate(self.model):
                    loss = F.mse_loss(self.model(x), y)
                    self.accelerator.backward(loss)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad()
                mine += ids.tolist()
                total += loss.item() / self.config.accumulation_steps
            self.state.step += 1
            records.append(StepRecord(self.state.step, total, lr, tuple(mine)))
        return records

    def save(self) -> str:
        folder = self.run_dir / CHECKPOINTS
        existing = (
            [int(p.name.rsplit("_", 1)[1]) for p in folder.glob("checkpoint_*")]
            if folder.is_dir()
            else []
        )
        self.accelerator.project_configuration.iteration = max(existing, default=-1) + 1
        return str(self.accelerator.save_state())

    def resume(self, checkpoint: str | None = None) -> int:
        folder = self.run_dir / CHECKPOINTS
        if checkpoint is None and not (folder.is_dir() and os.listdir(folder)):
            return self.state.step
        self.accelerator.load_state(checkpoint)
        self.batches = None
        return self.state.step

    def full_state(self) -> dict[str, Any]:
        return {
            "model": self.accelerator.unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "rng": {"cpu": torch.get_rng_state()},
            "data_position": self.state.state_dict(),
        }
