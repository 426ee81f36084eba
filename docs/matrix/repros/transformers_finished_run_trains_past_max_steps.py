"""Reproduces: RESUME-7 (transformers 5.23.0).

A run that reached ``max_steps`` has saved its final ``checkpoint-<max_steps>``. Restarted with
the same ``TrainingArguments`` and ``train(resume_from_checkpoint=True)`` (what a job
scheduler's retry of a finished job does), the Trainer skips the batches of the steps done and
enters the step loop without checking ``global_step`` against ``max_steps`` first: when
``max_steps`` ends inside an epoch it trains one more step, then stops and saves again.

The script trains 2 steps (an epoch has 4) with ``save_steps=2``, then restarts the same run
with ``resume_from_checkpoint=True``. Exit 0 and ``REPRODUCED`` when the restart trains a step
past ``max_steps``; exit 1 and ``NOT REPRODUCED`` when it returns without training.
"""

import os
import sys
import tempfile
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback
from transformers.utils import logging

MAX_STEPS = 2


class TinyConfig(PretrainedConfig):
    model_type = "tiny-linear"


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.linear = torch.nn.Linear(4, 1)
        self.post_init()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = self.linear(x)
        return {"loss": F.mse_loss(prediction, labels), "logits": prediction}


class Steps(TrainerCallback):
    """Keeps the global step at each step's end."""

    def __init__(self) -> None:
        self.trained: list[int] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trained.append(state.global_step)


def train(output_dir: str, resume: bool) -> list[int]:
    generator = torch.Generator().manual_seed(0)
    samples = [
        {
            "x": torch.randn(4, generator=generator),
            "labels": torch.randn(1, generator=generator),
        }
        for _ in range(16)
    ]
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=MAX_STEPS,
        save_steps=MAX_STEPS,
        per_device_train_batch_size=4,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
    )
    steps = Steps()
    trainer = Trainer(
        model=TinyModel(TinyConfig()),
        args=args,
        train_dataset=samples,
        callbacks=[steps],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=resume)
    return steps.trained


def main() -> int:
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as output_dir:
        first = train(output_dir, resume=False)
        if first != list(range(1, MAX_STEPS + 1)):
            raise RuntimeError(f"the first run trained steps {first}")
        restarted = train(output_dir, resume=True)
        folders = sorted(os.listdir(output_dir))
    if restarted:
        print(
            f"REPRODUCED: the run finished at max_steps={MAX_STEPS}; restarted with "
            f"resume_from_checkpoint=True it trained steps {restarted} and the output folder "
            f"now holds {folders}"
        )
        return 0
    print(f"NOT REPRODUCED: the restarted run trained no step; output folder holds {folders}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
