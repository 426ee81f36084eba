"""An owner-loop adapter in a few dozen lines: a toy framework whose ``train()`` owns the loop
and calls callbacks, and the adapter that drives it through :class:`OwnerLoopAdapter`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ckptspec.conformance.adapter import RankContext, ScenarioConfig
from ckptspec.conformance.owner_loop import OwnerLoopAdapter
from ckptspec.training import StepRecord


class ToyTrainer:
    """Stands in for a framework: ``train()`` resumes, runs to ``max_steps`` and saves when a
    callback sets ``control["should_save"]`` at a step end (as ``TrainerControl`` does)."""

    def __init__(self, out_dir: Path, callbacks: list[Any], max_steps: int | None) -> None:
        self.out_dir, self.callbacks, self.max_steps = out_dir, callbacks, max_steps
        self.step, self.weight = 0, 0.0

    def train(self, resume_from_checkpoint: str | None = None) -> None:
        if resume_from_checkpoint:
            state = json.loads(Path(resume_from_checkpoint).read_text())
            self.step, self.weight = state["step"], state["weight"]
        for cb in self.callbacks:
            cb.on_train_begin(self)
        while self.max_steps is None or self.step < self.max_steps:
            self.weight = self.weight * 0.5 + self.step + 1
            self.step += 1
            control = {"should_save": False}
            for cb in self.callbacks:
                cb.on_step_end(self, control)
            if control["should_save"]:
                path = self.out_dir / f"checkpoint-{self.step}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"step": self.step, "weight": self.weight}))
                for cb in self.callbacks:
                    cb.on_save(self, str(path))


class ParkingCallback:
    """The glue: report each event to the adapter and apply what it answers."""

    def __init__(self, adapter: OwnerLoopAdapter) -> None:
        self.adapter = adapter

    def on_train_begin(self, trainer: ToyTrainer) -> None:
        self.adapter.park("train_begin", trainer.step)

    def on_step_end(self, trainer: ToyTrainer, control: dict[str, bool]) -> None:
        record = StepRecord(trainer.step, trainer.weight, 1.0, ())
        control["should_save"] = self.adapter.park("step_end", trainer.step, record).save

    def on_save(self, trainer: ToyTrainer, path: str) -> None:
        self.adapter.park("save", trainer.step, path)


class ToyAdapter(OwnerLoopAdapter):
    """The toy framework as a conformance adapter (native format)."""

    checkpoint_format = "native"

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        self.config, self.rank = config, ctx.rank
        self.trainer: ToyTrainer | None = None

    @staticmethod
    def committed_checkpoints(config: ScenarioConfig) -> dict[int, str]:
        folder = Path(config.output_dir) / config.run_id
        return {int(p.stem.split("-")[1]): str(p) for p in folder.glob("checkpoint-*.json")}

    def run_loop(self, checkpoint: str | None, max_steps: int | None) -> None:
        out_dir = Path(self.config.output_dir) / self.config.run_id
        self.trainer = ToyTrainer(out_dir, [ParkingCallback(self)], max_steps)
        self.trainer.train(resume_from_checkpoint=checkpoint)

    def read_full_state(self) -> dict[str, Any]:
        assert self.trainer is not None
        return {
            "model": {"weight": self.trainer.weight},
            "data_position": {"step": self.trainer.step},
        }
