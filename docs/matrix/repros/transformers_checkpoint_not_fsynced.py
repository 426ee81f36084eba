"""Reproduces: COMMIT-5 (transformers 5.23.0).

``Trainer._save_checkpoint`` writes ``<output_dir>/checkpoint-<step>/`` (``model.safetensors``,
``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``, ``trainer_state.json``, ...) and
returns; a file or directory entry that is not fsynced may be lost by a power loss after the
save returned, so the checkpoint the next run resumes can vanish or be truncated.

The script records every path passed to ``os.fsync`` / ``os.fdatasync`` (through
``/proc/self/fd/<fd>``), trains one step with ``save_steps=1``, and at the ``on_save`` callback
(called when the save has returned) lists the checkpoint's files and directories never fsynced;
a directory counts as fsynced when its own descriptor was. Exit 0 and ``REPRODUCED`` when any
was not; exit 1 and ``NOT REPRODUCED`` when all were.
"""

import os
import sys
import tempfile
from collections.abc import Callable
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

fsynced: set[str] = set()


def recording(sync: Callable[[int], None]) -> Callable[[int], None]:
    def record_then_sync(fd: int) -> None:
        fsynced.add(os.readlink(f"/proc/self/fd/{fd}"))
        sync(fd)

    return record_then_sync


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


class UnsyncedAtSave(TrainerCallback):
    """Lists, when the save has returned, the checkpoint's paths that were never fsynced."""

    def __init__(self) -> None:
        self.unsynced: list[str] = []

    def on_save(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        output_dir = os.path.realpath(args.output_dir)
        checkpoint = os.path.join(output_dir, f"checkpoint-{state.global_step}")
        paths = [output_dir, checkpoint] + [
            os.path.join(checkpoint, name) for name in sorted(os.listdir(checkpoint))
        ]
        self.unsynced = [
            "<output_dir>" if path == output_dir else os.path.relpath(path, output_dir)
            for path in paths
            if path not in fsynced
        ]


def main() -> int:
    os.fsync = recording(os.fsync)
    os.fdatasync = recording(os.fdatasync)
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    samples = [{"x": torch.randn(4), "labels": torch.randn(1)} for _ in range(4)]
    callback = UnsyncedAtSave()
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            max_steps=1,
            save_steps=1,
            per_device_train_batch_size=4,
            use_cpu=True,
            report_to="none",
            disable_tqdm=True,
            logging_strategy="no",
        )
        trainer = Trainer(
            model=TinyModel(TinyConfig()),
            args=args,
            train_dataset=samples,
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    if not callback.unsynced:
        print("NOT REPRODUCED: every checkpoint file and directory was fsynced")
        return 1
    print(
        f"REPRODUCED: the save returned with {len(callback.unsynced)} paths never fsynced: "
        f"{', '.join(callback.unsynced)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
