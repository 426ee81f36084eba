"""A throwaway adapter for testing the engine itself (not a conformant trainer).

Replicated linear model, gradients all-reduced by hand, checkpoints as ``torch.save`` files.
``config.extra`` switches on misbehaviour: ``hang_eval_rank`` (that rank never returns from
evaluate), ``raise_in`` (an action name that raises ValueError on every rank), ``abort_in`` with
``abort_rank`` (that rank calls ``os.abort()`` in that action, as a heap corruption would;
with ``abort_once``, a path outside the run, only the first time: a flaky environment),
``mismatch_in`` (an action name in which the ranks all-reduce tensors of different sizes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.distributed as dist

from ckptspec.conformance.adapter import (
    CAPABILITIES,
    Capability,
    RankContext,
    ScenarioConfig,
    StepRecord,
    TrainerAdapter,
)
from ckptspec.errors import NoCheckpointError
from ckptspec.reference_impl.adapter import ReferenceAdapter


class ToyAdapter(TrainerAdapter):
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"eval"})
    eval_set_size: ClassVar[int] = 10

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        self.config, self.ctx = config, ctx
        torch.manual_seed(config.seed)
        self.model = torch.nn.Linear(4, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self._step = 0
        self.run_dir = os.path.join(config.output_dir, config.run_id)

    @property
    def step(self) -> int:
        return self._step

    def _maybe_raise(self, name: str) -> None:
        if self.config.extra.get("raise_in") == name:
            raise ValueError(f"toy failure in {name}")
        if self.config.extra.get("abort_in") == name and self.ctx.rank == self.config.extra.get(
            "abort_rank"
        ):
            once = self.config.extra.get("abort_once")
            if once is None or not os.path.exists(once):
                if once is not None:
                    open(once, "w").close()
                print(f"toy rank {self.ctx.rank} aborts in {name}", flush=True)
                os.abort()
        if self.config.extra.get("mismatch_in") == name:
            dist.all_reduce(torch.zeros(2 + self.ctx.rank))

    def _sample(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.config.seed * 1000 + i)
        x = torch.randn(4, generator=g)
        return x, x.sum().reshape(1)

    def resume(self, checkpoint: str | None = None) -> int:
        self._maybe_raise("resume")
        if checkpoint is None:
            if not os.path.isdir(self.run_dir):
                return 0
            steps = sorted(n for n in os.listdir(self.run_dir) if n.startswith("step-"))
            if not steps:
                return 0
            checkpoint = os.path.join(self.run_dir, steps[-1])
        if not os.path.isdir(checkpoint):
            raise NoCheckpointError(checkpoint)
        state = torch.load(os.path.join(checkpoint, "state.pt"), weights_only=True)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self._step = int(state["step"])
        torch.set_rng_state(
            torch.load(os.path.join(checkpoint, f"rng-{self.ctx.rank}.pt"), weights_only=True)
        )
        return self._step

    def train(self, steps: int) -> list[StepRecord]:
        self._maybe_raise("train")
        out = []
        per_rank = self.config.global_batch_size // self.ctx.world_size
        for _ in range(steps):
            base = self._step * self.config.global_batch_size + self.ctx.rank * per_rank
            ids = tuple(range(base, base + per_rank))
            xs, ys = zip(*(self._sample(i) for i in ids))
            noise = torch.rand(1) * 0.0
            loss = (
                torch.nn.functional.mse_loss(self.model(torch.stack(xs)), torch.stack(ys))
                + noise.sum()
            )
            self.opt.zero_grad()
            loss.backward()
            for p in self.model.parameters():
                dist.all_reduce(p.grad)
                p.grad /= self.ctx.world_size
            self.opt.step()
            self._step += 1
            out.append(StepRecord(self._step, float(loss), 0.1, ids))
        return out

    def save(self) -> str:
        self._maybe_raise("save")
        path = os.path.join(self.run_dir, f"step-{self._step:09d}")
        staging = path + ".tmp"
        if self.ctx.rank == 0:
            os.makedirs(staging, exist_ok=True)
        dist.barrier()
        torch.save(torch.get_rng_state(), os.path.join(staging, f"rng-{self.ctx.rank}.pt"))
        if self.ctx.rank == 0:
            with open(os.path.join(staging, "state.pt"), "wb") as f:
                torch.save(
                    {
                        "model": self.model.state_dict(),
                        "optimizer": self.opt.state_dict(),
                        "step": self._step,
                    },
                    f,
                )
                f.flush()
                os.fsync(f.fileno())
        dist.barrier()
        if self.ctx.rank == 0:
            os.rename(staging, path)
        dist.barrier()
        return path

    def fit(self) -> list[StepRecord]:
        self.resume(None)
        records = self.train(self.config.total_steps - self._step)
        self.save()
        return records

    def evaluate(self, samples: Sequence[int]) -> dict[str, float] | None:
        self._maybe_raise("evaluate")
        if self.config.extra.get("hang_eval_rank") == self.ctx.rank:
            import time

            while True:
                time.sleep(1)
        total = torch.zeros(2, dtype=torch.float64)
        with torch.no_grad():
            for i in samples:
                x, y = self._sample(10_000 + i)
                total[0] += float((self.model(x) - y).pow(2).sum())
                total[1] += 1
        dist.all_reduce(total)
        return None if total[1] == 0 else {"loss": float(total[0] / total[1])}

    def full_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": {"state": {str(k): v for k, v in self.opt.state_dict()["state"].items()}},
            "lr_scheduler": {"lr": 0.1},
            "rng": {"cpu": torch.get_rng_state()},
            "data_position": {"step": self._step},
        }


class UnbuildableAdapter(ToyAdapter):
    """Declares every capability but cannot even be built: nothing it does can be checked."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset(CAPABILITIES)

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        raise RuntimeError("this trainer cannot be built")


class LazyRngAdapter(ReferenceAdapter):
    """The reference trainer whose resume applies the RNG state only at the first batch after it
    (as the Hugging Face ``Trainer`` does), declared with ``restore_on_first_batch``; until then
    the RNG is elsewhere. A conformant trainer: the suite compares its RNG after that batch."""

    restore_on_first_batch: ClassVar[bool] = True
    applies_restore: ClassVar[bool] = True

    def resume(self, checkpoint: str | None = None) -> int:
        step = super().resume(checkpoint)
        self._pending: torch.Tensor | None = torch.get_rng_state()
        torch.manual_seed(self.trainer.config.seed + 1)
        return step

    def train(self, steps: int) -> list[StepRecord]:
        pending, self._pending = getattr(self, "_pending", None), None
        if pending is not None and self.applies_restore:
            torch.set_rng_state(pending)
        return super().train(steps)


class LazyRngLostAdapter(LazyRngAdapter):
    """Declares ``restore_on_first_batch`` but never applies the restored RNG: the declaration
    must not hide the bug (RESUME-8 fails)."""

    applies_restore: ClassVar[bool] = False
