"""A plain DDP training loop made testable by the conformance suite.

Bring your own loop; use ckptspec's checkpoint library (``ckptspec.checkpointing``) for the I/O. Run the suite:
``ckptspec conformance --adapter ckptspec.conformance.examples.ddp_trainer:DDPAdapter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
from torch.nn.parallel import DistributedDataParallel as DDP

from ckptspec.checkpointing import (
    BestPolicy,
    Checkpointer,
    DistContext,
    PerRank,
    Replicated,
    model_component,
    optimizer_component,
)
from ckptspec.conformance.adapter import (
    Capability,
    RankContext,
    ScenarioConfig,
    StepRecord,
    TrainerAdapter,
)
from ckptspec.manifest import EvalResult, Progress

DATASET_SIZE = 256


def sample(seed: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``index`` of the synthetic regression dataset ``seed`` (negative: eval set)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    x = torch.randn(8, generator=g)
    return x, (x[:4].sum() - x[4:].prod()).reshape(1)


class DDPAdapter(TrainerAdapter):
    """A small MLP trained with DDP, AdamW, linear warm-up and gradient accumulation."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {"reshard", "eval", "accumulation", "grad_sync", "epochs", "best", "retention"}
    )
    eval_set_size: ClassVar[int] = 16

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        self.config, self.ctx = config, ctx
        torch.manual_seed(config.seed)  # same initial weights on every rank
        net = torch.nn.Sequential(
            torch.nn.Linear(8, 32), torch.nn.Dropout(0.1), torch.nn.Tanh(), torch.nn.Linear(32, 1)
        )
        self.model = DDP(net)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-2)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / 3)
        )
        torch.manual_seed(config.seed * 7919 + ctx.rank)  # per-rank dropout stream
        self.samples_seen = 0
        self.dataset_size = (
            config.steps_per_epoch * config.global_batch_size
            if config.steps_per_epoch
            else DATASET_SIZE
        )
        self._step = 0
        self.last_eval: tuple[int, EvalResult] | None = None
        dist_ctx = DistContext(ctx.rank, ctx.world_size, ctx.local_rank, torch.device(ctx.device))
        best = (
            BestPolicy(config.best_metric, config.best_mode, config.best_min_delta)
            if config.best_metric
            else None
        )
        fingerprint = {  # the settings a resume must not change
            "accumulation_steps": config.accumulation_steps,
            "global_batch_size": config.global_batch_size,
            "dataset": {"seed": config.seed, "size": self.dataset_size},
            "model": "mlp-8-32-1",
        }
        run_dir = Path(config.output_dir) / config.run_id
        self.checkpointer = Checkpointer(
            run_dir, dist_ctx, fingerprint, best=best, keep_last=config.keep_last
        )
        self.state = {  # what a checkpoint holds, and how each part is restored
            "model": model_component(self.model),
            "optimizer": optimizer_component(self.model, self.optimizer),
            "lr_scheduler": Replicated(self.scheduler.state_dict, self.scheduler.load_state_dict),
            "data_position": Replicated(
                lambda: {"samples_seen": self.samples_seen, "step": self._step}, self._set_position
            ),
            "rng": PerRank(
                lambda: {"cpu": torch.get_rng_state()},
                lambda saved: torch.set_rng_state(saved["cpu"]),
            ),
        }

    @property
    def step(self) -> int:
        return self._step

    def _set_position(self, position: dict[str, int]) -> None:
        self.samples_seen, self._step = position["samples_seen"], position["step"]

    def _order(self, epoch: int) -> list[int]:
        return torch.randperm(
            self.dataset_size, generator=torch.Generator().manual_seed(self.config.seed + epoch)
        ).tolist()

    def _next_ids(self, count: int) -> list[int]:
        """The next ``count`` sample ids of the global stream (epoch-wise shuffled)."""
        ids = []
        for n in range(self.samples_seen, self.samples_seen + count):
            ids.append(self._order(n // self.dataset_size)[n % self.dataset_size])
        self.samples_seen += count
        return ids

    def train(self, steps: int) -> list[StepRecord]:
        acc, ws, rank = self.config.accumulation_steps, self.ctx.world_size, self.ctx.rank
        micro = self.config.global_batch_size // (ws * acc)
        records = []
        self.model.train()
        for _ in range(steps):
            mine: list[int] = []
            total = 0.0
            for m in range(acc):
                batch = self._next_ids(micro * ws)[rank * micro : (rank + 1) * micro]
                mine += batch
                xs, ys = zip(*(sample(self.config.seed, i) for i in batch))
                sync = m == acc - 1 or not self.config.defer_grad_sync
                with self.model.no_sync() if not sync else torch.enable_grad():
                    loss = F.mse_loss(self.model(torch.stack(xs)), torch.stack(ys)) / acc
                    loss.backward()
                total += loss.item()
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self._step += 1
            records.append(StepRecord(self._step, total, lr, tuple(mine)))
        return records

    def evaluate(self, samples: Sequence[int]) -> dict[str, float] | None:
        sums = torch.zeros(2, dtype=torch.float64)
        self.model.eval()
        with torch.no_grad():
            for i in samples:
                x, y = sample(self.config.seed, -1 - i)
                sums += torch.tensor(
                    [float((self.model(x[None]) - y).pow(2).sum()), 1.0], dtype=torch.float64
                )
        dist.all_reduce(sums)  # every rank, even with an empty shard
        if sums[1] == 0:
            return None
        metrics = {"mse": float(sums[0] / sums[1])}
        self.last_eval = (self._step, EvalResult(metrics=metrics, samples=int(sums[1])))
        return metrics

    def save(self) -> str:
        epoch, offset = divmod(self.samples_seen, self.dataset_size)
        progress = Progress(
            global_step=self._step,
            epoch=epoch,
            batches_in_epoch=offset // self.config.global_batch_size,
            samples_in_epoch=offset,
            samples_seen=self.samples_seen,
            accumulation_steps=self.config.accumulation_steps,
        )
        eval_result = (
            self.last_eval[1] if self.last_eval and self.last_eval[0] == self._step else None
        )
        return str(
            self.checkpointer.save(self._step, self.state, progress=progress, eval=eval_result)
        )

    def resume(self, checkpoint: str | None = None) -> int:
        self.checkpointer.resume(
            self.state, checkpoint
        )  # every check, then every part read and verified, then applied
        return self._step

    def fit(self) -> list[StepRecord]:
        self.resume(None)
        records: list[StepRecord] = []
        while self._step < self.config.total_steps:
            records += self.train(1)
            if self.config.eval_every and self._step % self.config.eval_every == 0:
                self.evaluate(range(self.ctx.rank, self.eval_set_size, self.ctx.world_size))
            if self._step == self.config.total_steps or (
                self.config.save_every and self._step % self.config.save_every == 0
            ):
                self.save()
        return records

    def full_state(self) -> dict[str, Any]:
        return {
            "model": get_model_state_dict(self.model),
            "optimizer": get_optimizer_state_dict(self.model, self.optimizer),
            "lr_scheduler": self.scheduler.state_dict(),
            "rng": {"cpu": torch.get_rng_state()},
            "data_position": {"samples_seen": self.samples_seen, "step": self._step},
        }

    def close(self) -> None:
        self.checkpointer.close()
