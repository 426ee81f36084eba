"""A loop built from torchtitan's components, checkpointed with torchtitan's ``CheckpointManager`` (DCP).

torchtitan's own ``Trainer`` trains its registered language models from a job config; this
adapter keeps the suite's small MLP and uses the torchtitan components that own the state:
``OptimizersContainer`` (AdamW), ``LRSchedulersContainer`` (warm-up ``LambdaLR``), a
``ParallelAwareDataloader`` over a stateful per-DP-rank stream (the shape of torchtitan's
datasets, which checkpoint their own position), and ``CheckpointManager`` with its DCP folders
``checkpoint/step-<N>``, ``load(step=-1)`` discovery of the latest and ``keep_latest_k`` retention.
The train step follows torchtitan's: backward per micro-batch with the loss scaled by the number
of micro-batches, then ``optimizers.step()``, ``lr_schedulers.step()``, ``zero_grad()``.
Run the suite with ``--ckptspec-adapter ckptspec.conformance.adapters.torchtitan_trainer:Adapter``.

Glue the adapter adds to drive torchtitan inside the suite (everything else is torchtitan's):

- The model is wrapped in ``DistributedDataParallel`` over the suite's gloo group, in place of
  torchtitan's ``parallelize`` functions, which are written for its own model classes.
- ``CheckpointManager.Config(interval=1, last_save_model_only=False)``, so that every
  :meth:`Adapter.save` writes a full checkpoint at the current step.
- :meth:`Adapter.resume` of a given checkpoint path calls ``load(step=N)`` with ``N`` read from the
  folder name ``step-<N>`` (the manager loads by step, not by path).
- ``OptimizersContainer.Config(implementation="for-loop")``: the default ``fused`` is CUDA-only.
- ``keep_latest_k=max(2, keep_last)``: the manager refuses ``keep_latest_k=1`` ("we need to maintain
  at least 2 checkpoint replicas"); keeping 2 still keeps "at least the N highest" (RUN-5).

Declared refusal: ``CheckpointException``, the error with which DCP (and so ``load()``) reports a
checkpoint it could not read on some rank; torchtitan adds none of its own. Its other refusal,
an ``assert`` that the data-parallel degree did not change, is not declared: an
``AssertionError`` is also what any bug raises, and ``python -O`` removes the check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.distributed.checkpoint.api import CheckpointException
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import IterableDataset
from torchtitan.components.checkpoint import CheckpointManager
from torchtitan.components.dataloader import ParallelAwareDataloader
from torchtitan.components.optimizer.lr_scheduler import LRSchedulersContainer
from torchtitan.components.optimizer.optimizer import OptimizersContainer, ParamGroupConfig

from ckptspec.conformance.adapter import Capability, RankContext, ScenarioConfig, StepRecord
from ckptspec.conformance.adapters.common import (
    FrameworkAdapter,
    TrainState,
    build_mlp,
    dataset_size,
    framework_version,
    micro_batch,
    warmup,
)
from ckptspec.conformance.examples.ddp_trainer import sample

CHECKPOINT_FOLDER = "checkpoint"


class ShardedStream(IterableDataset):
    """This DP rank's share of the global sample stream (epoch-wise shuffled by ``seed + epoch``),
    as ``(id, x, y)``; stateful like torchtitan's datasets: it checkpoints its global position."""

    def __init__(self, config: ScenarioConfig, dp_rank: int, dp_world_size: int) -> None:
        self.seed, self.size = config.seed, dataset_size(config)
        self.micro, self.rank, self.world = (
            micro_batch(config, dp_world_size),
            dp_rank,
            dp_world_size,
        )
        self.position = 0  # global samples consumed by all ranks

    def __iter__(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        while True:
            epoch, offset = divmod(self.position, self.size)
            order = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(self.seed + epoch)
            ).tolist()
            owner = (self.position // self.micro) % self.world
            index = order[offset]
            self.position += 1
            if owner == self.rank:
                yield (index, *sample(self.seed, index))

    def state_dict(self) -> dict[str, int]:
        """The stream position."""
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the position of :meth:`state_dict`."""
        self.position = int(state["position"])


class Adapter(FrameworkAdapter):
    """torchtitan components over DDP (gloo on CPU) as a conformance adapter (native format)."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {"eval", "accumulation", "epochs", "retention"}
    )
    framework: ClassVar[str] = framework_version("torchtitan")
    refusal_errors: ClassVar[tuple[type[BaseException], ...]] = (CheckpointException,)

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        self.config, self.ctx = config, ctx
        torch.manual_seed(config.seed)  # same initial weights on every rank
        self.model = DDP(build_mlp())
        self.optimizers = OptimizersContainer(
            OptimizersContainer.Config(
                param_groups=[
                    ParamGroupConfig(
                        pattern=r".*", optimizer_name="AdamW", optimizer_kwargs={"lr": 1e-2}
                    )
                ],
                implementation="for-loop",
            ),
            model_parts=[self.model],
        )
        self.lr_schedulers = LRSchedulersContainer(self.optimizers, warmup)
        self.dataloader = ParallelAwareDataloader(
            ShardedStream(config, ctx.rank, ctx.world_size),
            ctx.rank,
            ctx.world_size,
            batch_size=micro_batch(config, ctx.world_size),
        )
        self.state = TrainState()
        self.checkpointer = CheckpointManager(
            CheckpointManager.Config(
                enable=True,
                folder=CHECKPOINT_FOLDER,
                interval=1,
                last_save_model_only=False,
                keep_latest_k=max(2, config.keep_last) if config.keep_last else 0,
            ),
            dataloader=self.dataloader,
            model_parts=[self.model],
            optimizers=self.optimizers,
            lr_schedulers=self.lr_schedulers,
            states={"train_state": self.state},
            sd_adapter=None,
            base_folder=str(Path(config.output_dir) / config.run_id),
        )
        torch.manual_seed(config.seed * 7919 + ctx.rank)  # per-rank dropout stream
        self.batches: Iterator[Any] | None = None

    @staticmethod
    def committed_checkpoints(config: ScenarioConfig) -> dict[int, str]:
        """``{step: folder}`` of every ``checkpoint/step-<N>`` holding DCP's ``.metadata`` (what ``load()`` considers)."""
        folder = Path(config.output_dir) / config.run_id / CHECKPOINT_FOLDER
        found = folder.glob("step-*/.metadata") if folder.is_dir() else ()
        return {int(m.parent.name.split("-", 1)[1]): str(m.parent) for m in found}

    def train(self, steps: int) -> list[StepRecord]:
        acc = self.config.accumulation_steps
        if self.batches is None:
            self.batches = iter(self.dataloader)
        records = []
        self.model.train()
        for _ in range(steps):
            mine: list[int] = []
            total = 0.0
            lr = self.lr_schedulers.schedulers[0].get_last_lr()[0]
            for m in range(acc):
                ids, x, y = next(self.batches)
                with self.model.no_sync() if m < acc - 1 else torch.enable_grad():
                    loss = F.mse_loss(self.model(x), y) / acc
                    loss.backward()
                mine += ids.tolist()
                total += loss.item()
            self.optimizers.step()
            self.lr_schedulers.step()
            self.optimizers.zero_grad()
            self.state.step += 1
            records.append(StepRecord(self.state.step, total, lr, tuple(mine)))
        return records

    def save(self) -> str:
        self.checkpointer.save(self.state.step)
        self.checkpointer.maybe_wait_for_saving()
        return str(Path(self.checkpointer.folder) / f"step-{self.state.step}")

    def resume(self, checkpoint: str | None = None) -> int:
        step = -1 if checkpoint is None else int(Path(checkpoint).name.split("-", 1)[1])
        self.checkpointer.load(step=step)
        self.batches = None
        return self.state.step

    def full_state(self) -> dict[str, Any]:
        return {
            "model": self.model.module.state_dict(),
            "optimizer": self.optimizers.state_dict(),
            "lr_scheduler": self.lr_schedulers.state_dict(),
            "rng": {"cpu": torch.get_rng_state()},
            "data_position": self.state.state_dict(),
        }

    def close(self) -> None:
        self.checkpointer.close()
