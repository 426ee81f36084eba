"""A Hugging Face ``transformers.Trainer`` run, checkpointed by the Trainer itself.

Written the way the Trainer's documentation writes training: a ``PreTrainedModel`` built from
its ``PretrainedConfig`` (no hub download) whose ``forward`` returns the loss, a map-style
dataset of dicts, ``TrainingArguments`` (``max_steps``, per-device batch size, gradient
accumulation, ``save_strategy``/``save_steps``, ``eval_strategy``/``eval_steps``), the
optimizer and warm-up ``LambdaLR`` passed as ``optimizers=``, ``compute_metrics`` for the eval
MSE, a ``TrainerCallback``, and ``trainer.train(resume_from_checkpoint=...)``. The Trainer
writes ``checkpoint-<global step>/`` folders in the output directory and resumes the one it is
given (``resume(None)`` and ``fit()`` take the highest, as ``get_last_checkpoint`` does). Run
the suite with ``--ckptspec-adapter ckptspec.conformance.adapters.hf_trainer:Adapter``.

The Trainer owns its loop, so this is an :class:`~ckptspec.conformance.owner_loop.OwnerLoopAdapter`:
the callback parks the loop at train begin, each step end and each save, and turns the
suite's save request into ``control.should_save``. Glue the adapter adds (everything else is
the Trainer's):

- ``use_cpu=True`` on CPU: the Trainer's Accelerate state adopts the suite's gloo group.
- ``max_steps`` of a driven run (not ``fit()``) is large, so the loop never ends before the
  suite stops it; the LR schedule does not depend on it.
- The model's ``forward`` notes the sample ids and loss of each training micro-batch so the
  callback can report the step's samples (the Trainer does not expose them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ckptspec.conformance.adapter import Capability, CheckpointFormat, RankContext, ScenarioConfig
from ckptspec.conformance.adapters.common import (
    SyntheticRegression,
    build_mlp,
    dataset_size,
    framework_version,
    micro_batch,
    warmup,
)
from ckptspec.conformance.examples.ddp_trainer import sample
from ckptspec.conformance.owner_loop import OwnerLoopAdapter
from ckptspec.training import StepRecord

UNBOUNDED_STEPS = 1_000_000  # max_steps of a driven run: the suite, not the Trainer, ends it


class MLPConfig(PretrainedConfig):
    """The configuration of :class:`MLPModel` (the architecture is fixed: 8-32-1 with dropout)."""

    model_type = "ckptspec-mlp"


class MLPModel(PreTrainedModel):
    """The shared MLP as a ``PreTrainedModel``: ``forward(x, labels, ids)`` returns the MSE loss."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        self.net = build_mlp()
        self.seen: list[
            tuple[list[int], float]
        ] = []  # (ids, loss) of each training micro-batch since the last step end
        self.post_init()

    def _init_weights(self, module: torch.nn.Module) -> None:
        """Keep the weights :func:`build_mlp` drew from the seeded global RNG."""

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None, ids: torch.Tensor | None = None
    ) -> dict[str, Any]:
        out = self.net(x)
        loss = F.mse_loss(out, labels) if labels is not None else None
        if self.training and ids is not None and loss is not None:
            self.seen.append((ids.tolist(), float(loss)))
        return {"loss": loss, "logits": out}


class _Items(Dataset):
    """``SyntheticRegression`` (or the eval samples ``ids``) as the dicts the Trainer's collator stacks."""

    def __init__(self, seed: int, size: int = 0, eval_ids: Sequence[int] | None = None) -> None:
        self.train_set = SyntheticRegression(seed, size)
        self.seed, self.eval_ids = seed, list(eval_ids) if eval_ids is not None else None

    def __len__(self) -> int:
        return len(self.eval_ids) if self.eval_ids is not None else len(self.train_set)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.eval_ids is not None:
            x, y = sample(self.seed, -1 - self.eval_ids[index])
            return {"x": x, "labels": y}
        i, x, y = self.train_set[index]
        return {"x": x, "labels": y, "ids": i}


def _mse(prediction: Any) -> dict[str, float]:
    return {
        "mse": float(
            np.mean((np.asarray(prediction.predictions) - np.asarray(prediction.label_ids)) ** 2)
        )
    }


class _Parking(TrainerCallback):
    """Reports the Trainer's events to the adapter and applies its save requests."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.lr = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.adapter.park("train_begin", state.global_step)

    def on_step_begin(
        self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any
    ) -> None:
        self.lr = float(optimizer.param_groups[0]["lr"])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = self.adapter.model
        seen, model.seen = model.seen, []
        record = StepRecord(
            state.global_step,
            sum(loss for _, loss in seen) / max(len(seen), 1),
            self.lr,
            tuple(i for ids, _ in seen for i in ids),
        )
        if self.adapter.park("step_end", state.global_step, record).save:
            control.should_save = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        path = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        self.adapter.park("save", state.global_step, str(path))


class Adapter(OwnerLoopAdapter):
    """``transformers.Trainer`` (DDP over gloo on CPU) as a conformance adapter (native format)."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset({"eval", "accumulation", "epochs"})
    checkpoint_format: ClassVar[CheckpointFormat] = "native"
    framework: ClassVar[str] = framework_version("transformers")
    eval_set_size: ClassVar[int] = 16
    restore_on_first_batch: ClassVar[bool] = (
        True  # the Trainer loads the RNG state at the epoch's first batch
    )

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        self.config, self.ctx, self.rank = config, ctx, ctx.rank
        self.run_dir = Path(config.output_dir) / config.run_id
        self.trainer: Trainer | None = None

    @staticmethod
    def committed_checkpoints(config: ScenarioConfig) -> dict[int, str]:
        """``{step: folder}`` of every ``checkpoint-<N>`` folder (what ``get_last_checkpoint`` chooses from)."""
        folder = Path(config.output_dir) / config.run_id
        prefix = f"{PREFIX_CHECKPOINT_DIR}-"
        return {
            int(p.name[len(prefix) :]): str(p)
            for p in (folder.iterdir() if folder.is_dir() else ())
            if p.is_dir() and p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
        }

    @property
    def model(self) -> MLPModel:
        """The unwrapped model of the current loop."""
        assert self.trainer is not None
        return self.trainer.model  # type: ignore[return-value]

    def run_loop(self, checkpoint: str | None, max_steps: int | None) -> None:
        config, ctx = self.config, self.ctx
        fit = max_steps is not None
        args = TrainingArguments(
            output_dir=str(self.run_dir),
            max_steps=max_steps or UNBOUNDED_STEPS,
            seed=config.seed,
            per_device_train_batch_size=micro_batch(config, ctx.world_size),
            per_device_eval_batch_size=4,
            gradient_accumulation_steps=config.accumulation_steps,
            save_strategy="steps" if fit else "no",
            save_steps=config.save_every or config.total_steps,
            eval_strategy="steps" if fit and config.eval_every else "no",
            eval_steps=config.eval_every or None,
            use_cpu=not ctx.device.startswith("cuda"),
            report_to="none",
            logging_strategy="no",
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        torch.manual_seed(config.seed)  # same initial weights on every rank
        model = MLPModel(MLPConfig())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        self.trainer = Trainer(
            model=model,
            args=args,
            train_dataset=_Items(config.seed, dataset_size(config)),
            eval_dataset=_Items(config.seed, eval_ids=range(self.eval_set_size)),
            compute_metrics=_mse,
            optimizers=(optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, warmup)),
            callbacks=[_Parking(self)],
        )
        self.trainer.train(resume_from_checkpoint=checkpoint)

    def evaluate_global(self, global_ids: Sequence[int]) -> dict[str, float] | None:
        if not global_ids:
            return None
        assert self.trainer is not None
        metrics = self.trainer.evaluate(eval_dataset=_Items(self.config.seed, eval_ids=global_ids))
        return {"mse": float(metrics["eval_mse"])}

    def read_full_state(self) -> dict[str, Any]:
        assert self.trainer is not None
        return {
            "model": self.model.state_dict(),
            "optimizer": self.trainer.optimizer.state_dict(),
            "lr_scheduler": self.trainer.lr_scheduler.state_dict(),
            "rng": {"cpu": torch.get_rng_state()},
            "data_position": {"step": self.trainer.state.global_step},
        }
