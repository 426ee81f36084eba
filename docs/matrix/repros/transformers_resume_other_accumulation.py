"""Reproduces: RESUME-5 (transformers 5.23.0).

``Trainer.train(resume_from_checkpoint=...)`` restores the step count from
``trainer_state.json`` and derives the data position from it with the *current*
``gradient_accumulation_steps``; it compares only ``per_device_train_batch_size`` (and the
logging/eval/save intervals) with the checkpoint's, and only to log a warning. A resume with
another accumulation, so another global batch size, goes on with the optimizer and schedule
state of the old one, and the saved steps are re-read as steps of the new batch size.

The script trains 2 steps of 4 samples (``gradient_accumulation_steps=1``) out of 16 and saves
``checkpoint-2``, then resumes it with ``gradient_accumulation_steps=2`` (8 samples a step) to
step 3. Exit 0 and ``REPRODUCED`` when the resume trains step 3 without an error; exit 1 and
``NOT REPRODUCED`` when it refuses the changed setting.
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
    """Keeps ``(global_step, epoch)`` at each step's end."""

    def __init__(self) -> None:
        self.ends: list[tuple[int, float]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.ends.append((state.global_step, state.epoch))


def train(output_dir: str, max_steps: int, accumulation: int, resume: str | None) -> Steps:
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
        max_steps=max_steps,
        save_steps=2,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=accumulation,
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
    return steps


def main() -> int:
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as output_dir:
        before = train(output_dir, max_steps=2, accumulation=1, resume=None)
        try:
            after = train(
                output_dir,
                max_steps=3,
                accumulation=2,
                resume=os.path.join(output_dir, "checkpoint-2"),
            )
        except Exception as error:  # a refusal of the changed accumulation
            print(f"NOT REPRODUCED: the resume with another accumulation raised {error!r}")
            return 1
    if not after.ends:
        print("NOT REPRODUCED: the resume with another accumulation trained no step")
        return 1
    (saved_step, saved_epoch), (step, epoch) = before.ends[-1], after.ends[-1]
    resumed_epoch = epoch - 8 / 16  # one step of 8 of the 16 samples
    print(
        f"REPRODUCED: checkpoint-{saved_step} (4 samples a step, saved at epoch {saved_epoch}) "
        f"resumed with gradient_accumulation_steps=2 (8 samples a step) and trained step {step} "
        f"without an error, from epoch {resumed_epoch} to {epoch}: the saved steps were re-read "
        "as steps of 8 samples"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
