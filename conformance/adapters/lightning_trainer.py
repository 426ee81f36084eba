"""A Lightning Fabric training loop, checkpointed with Fabric's own ``save``/``load``.

The loop is written the way Fabric's documentation writes one: ``fabric.setup`` on the model and
AdamW, ``fabric.setup_dataloaders`` on a shuffled ``DataLoader`` (Fabric adds the distributed
sampler; the loop calls ``set_epoch``), gradient accumulation with ``fabric.no_backward_sync``,
``fabric.backward``, and one state dict ``{"model", "optimizer", "lr_scheduler", "train_state"}``
given to ``fabric.save(path, state)`` and restored in place by ``fabric.load(path, state)``.
Fabric leaves naming, discovery and retention of checkpoint files to the loop: this one saves
``checkpoints/step-<N>.ckpt`` and resumes the highest ``N``, and skips the batches already
consumed in the epoch by iterating past them. Run the suite with
``--ckptspec-adapter ckptspec.conformance.adapters.lightning_trainer:Adapter``.

Glue the adapter adds to drive Fabric inside the suite (everything else is Fabric's):

- ``Fabric(accelerator="cpu", strategy="ddp", devices=<world size>)`` followed by
  ``fabric.launch()``: under the suite's elastic launcher Fabric detects the torchelastic
  environment, launches nothing and keeps the process group that is already initialised.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from lightning.fabric import Fabric
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


def _step_of(path: Path) -> int:
    return int(path.stem.split("-", 1)[1])


class Adapter(FrameworkAdapter):
    """A Fabric DDP loop (gloo on CPU) as a conformance adapter (native format)."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {"eval", "accumulation", "grad_sync", "epochs"}
    )
    framework: ClassVar[str] = framework_version("lightning")

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        self.config, self.ctx = config, ctx
        self.run_dir = Path(config.output_dir) / config.run_id
        self.fabric = Fabric(
            accelerator="cuda" if ctx.device.startswith("cuda") else "cpu",
            strategy="ddp",
            devices=ctx.world_size,
        )
        self.fabric.launch()
        torch.manual_seed(config.seed)  # same initial weights on every rank
        model = build_mlp()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup)
        self.model, self.optimizer = self.fabric.setup(model, optimizer)
        dataset = SyntheticRegression(config.seed, dataset_size(config))
        self.loader = self.fabric.setup_dataloaders(
            DataLoader(dataset, batch_size=micro_batch(config, ctx.world_size), shuffle=True)
        )
        self.state = TrainState()
        torch.manual_seed(config.seed * 7919 + ctx.rank)  # per-rank dropout stream
        self.batches: Iterator[Any] | None = None

    @staticmethod
    def committed_checkpoints(config: ScenarioConfig) -> dict[int, str]:
        """``{step: file}`` of every ``checkpoints/step-<N>.ckpt`` (the files this loop resumes from)."""
        folder = Path(config.output_dir) / config.run_id / CHECKPOINTS
        return {_step_of(p): str(p) for p in folder.glob("step-*.ckpt")} if folder.is_dir() else {}

    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "lr_scheduler": self.scheduler,
            "train_state": self.state,
        }

    def _next_batch(self) -> Any:
        if self.batches is None:
            epoch, offset = divmod(self.state.micro, len(self.loader))
            self.loader.sampler.set_epoch(epoch)
            self.batches = itertools.islice(iter(self.loader), offset, None)
        try:
            batch = next(self.batches)
        except StopIteration:
            self.batches = None
            return self._next_batch()
        self.state.micro += 1
        return batch

    def train(self, steps: int) -> list[StepRecord]:
        acc = self.config.accumulation_steps
        records = []
        self.model.train()
        for _ in range(steps):
            mine: list[int] = []
            total = 0.0
            for m in range(acc):
                ids, x, y = self._next_batch()
                accumulating = m < acc - 1 and self.config.defer_grad_sync
                with self.fabric.no_backward_sync(self.model, enabled=accumulating):
                    loss = F.mse_loss(self.model(x), y) / acc
                    self.fabric.backward(loss)
                mine += ids.tolist()
                total += loss.item()
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
            self.state.step += 1
            records.append(StepRecord(self.state.step, total, lr, tuple(mine)))
        return records

    def save(self) -> str:
        path = self.run_dir / CHECKPOINTS / f"step-{self.state.step}.ckpt"
        self.fabric.save(path, self._checkpoint_state())
        return str(path)

    def resume(self, checkpoint: str | None = None) -> int:
        if checkpoint is None:
            found = self.committed_checkpoints(self.config)
            if not found:
                return self.state.step
            checkpoint = found[max(found)]
        self.fabric.load(checkpoint, self._checkpoint_state())
        self.batches = None
        return self.state.step

    def full_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "rng": {"cpu": torch.get_rng_state()},
            "data_position": self.state.state_dict(),
        }
