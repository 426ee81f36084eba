"""Lightning's ``Trainer`` (the loop most Lightning users run), checkpointed by the Trainer itself.

Beside ``lightning_trainer.py``, which is a Lightning *Fabric* loop. Written the way Lightning's
documentation writes training: a ``LightningModule`` with ``training_step`` returning the loss
and ``configure_optimizers`` returning AdamW and a per-step warm-up ``LambdaLR``, a shuffled
``DataLoader`` (the Trainer adds the distributed sampler), ``Trainer(max_steps=...,
accumulate_grad_batches=..., strategy="ddp")``, ``trainer.save_checkpoint(path)`` and
``trainer.fit(module, train_dataloaders=..., ckpt_path=...)``. Checkpoints are
``checkpoints/step-<N>.ckpt`` (the highest is resumed). Run the suite with
``--ckptspec-adapter ckptspec.conformance.adapters.lightning_pl_trainer:Adapter``.

The Trainer owns its loop, so this is an :class:`~ckptspec.conformance.owner_loop.OwnerLoopAdapter`:
a ``Callback`` parks the loop at train start and at each optimizer step end
(``on_train_batch_end`` where ``global_step`` moved) and saves there when the suite asks (in
``fit()``: every ``save_every`` steps and at ``max_steps``). Glue
the adapter adds: under the suite's elastic launcher the DDP strategy keeps the process group
that is already initialised; a driven run (not ``fit()``) has a large ``max_steps`` so the loop
never ends before the suite stops it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ckptspec.conformance.adapter import Capability, CheckpointFormat, RankContext, ScenarioConfig
from ckptspec.conformance.adapters.common import (
    SyntheticRegression,
    build_mlp,
    dataset_size,
    framework_version,
    micro_batch,
    warmup,
)
from ckptspec.conformance.owner_loop import OwnerLoopAdapter
from ckptspec.training import StepRecord

CHECKPOINTS = "checkpoints"
UNBOUNDED_STEPS = 1_000_000  # max_steps of a driven run: the suite, not the Trainer, ends it


class Regression(pl.LightningModule):
    """The shared MLP as a ``LightningModule``; notes each training batch's ids and loss."""

    def __init__(self, accumulation_steps: int) -> None:
        super().__init__()
        self.net = build_mlp()
        self.accumulation_steps = accumulation_steps
        self.seen: list[tuple[list[int], float]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        ids, x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.seen.append((ids.tolist(), float(loss.detach()) / self.accumulation_steps))
        return loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-2)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class _Parking(pl.Callback):
    """Reports the Trainer's events to the adapter and saves when it asks."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.last_step = -1
        self.lr = 0.0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.last_step = trainer.global_step
        self.adapter.park("train_begin", trainer.global_step)

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: Any, batch: Any, batch_idx: int
    ) -> None:
        if not module.seen:
            self.lr = float(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.last_step:
            return  # a micro-batch inside an accumulation cycle
        self.last_step = step = trainer.global_step
        seen, module.seen = module.seen, []
        record = StepRecord(
            step, sum(loss for _, loss in seen), self.lr, tuple(i for ids, _ in seen for i in ids)
        )
        config = self.adapter.config
        scheduled = (
            trainer.max_steps == config.total_steps
            and (  # fit(): save every `save_every` and at the end
                step == config.total_steps
                or bool(config.save_every and step % config.save_every == 0)
            )
        )
        if self.adapter.park("step_end", step, record).save or scheduled:
            path = self.adapter.run_dir / CHECKPOINTS / f"step-{step}.ckpt"
            trainer.save_checkpoint(path)
            self.adapter.park("save", step, str(path))


class Adapter(OwnerLoopAdapter):
    """Lightning's ``Trainer`` (DDP over gloo on CPU) as a conformance adapter (native format)."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset({"accumulation", "epochs"})
    checkpoint_format: ClassVar[CheckpointFormat] = "native"
    framework: ClassVar[str] = framework_version("lightning")

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        self.config, self.ctx, self.rank = config, ctx, ctx.rank
        self.run_dir = Path(config.output_dir) / config.run_id
        self.trainer: pl.Trainer | None = None
        self.module: Regression | None = None

    @staticmethod
    def committed_checkpoints(config: ScenarioConfig) -> dict[int, str]:
        """``{step: file}`` of every ``checkpoints/step-<N>.ckpt`` (the files this run resumes from)."""
        folder = Path(config.output_dir) / config.run_id / CHECKPOINTS
        return (
            {int(p.stem.split("-", 1)[1]): str(p) for p in folder.glob("step-*.ckpt")}
            if folder.is_dir()
            else {}
        )

    def run_loop(self, checkpoint: str | None, max_steps: int | None) -> None:
        config, ctx = self.config, self.ctx
        torch.manual_seed(config.seed)  # same initial weights on every rank
        self.module = Regression(config.accumulation_steps)
        loader = DataLoader(
            SyntheticRegression(config.seed, dataset_size(config)),
            batch_size=micro_batch(config, ctx.world_size),
            shuffle=True,
        )
        self.trainer = pl.Trainer(
            accelerator="cuda" if ctx.device.startswith("cuda") else "cpu",
            strategy="ddp",
            devices=ctx.world_size,
            max_steps=max_steps or UNBOUNDED_STEPS,
            accumulate_grad_batches=config.accumulation_steps,
            callbacks=[_Parking(self)],
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(self.run_dir),
        )
        self.trainer.fit(self.module, train_dataloaders=loader, ckpt_path=checkpoint)

    def read_full_state(self) -> dict[str, Any]:
        assert self.trainer is not None and self.module is not None
        return {
            "model": self.module.state_dict(),
            "optimizer": self.trainer.optimizers[0].state_dict(),
            "lr_scheduler": self.trainer.lr_scheduler_configs[0].scheduler.state_dict(),
            "rng": {"cpu": torch.get_rng_state()},
            "data_position": {"step": self.trainer.global_step},
        }
