"""Reproduces: RESUME-3 (transformers 5.23.0).

A checkpoint written by a Trainer on two ranks holds one ``rng_state_<rank>.pth`` per rank and
a ``trainer_state.json`` whose step count stands for steps of the two-rank global batch. A
resume on one rank loads it without comparing the world size: it looks for ``rng_state.pth``,
finds none and only logs at info level, and re-reads the step count with the one-rank global
batch.

Two gloo ranks (forked, ``file://`` rendezvous, adopted by the Trainer with ``use_cpu=True``)
train 2 of 4 steps and save ``checkpoint-2``; this process, on one rank with the same
``TrainingArguments``, resumes it. Exit 0 and ``REPRODUCED`` when the one-rank resume trains
steps 3 and 4 without an error; exit 1 and ``NOT REPRODUCED`` when it refuses the checkpoint.
"""

import json
import os
import sys
import tempfile
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
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

WORLD_SIZE = 2


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
    """Keeps ``(global_step, epoch)`` at each step's end; stops training after ``stop_at``."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.ends: list[tuple[int, float]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.ends.append((state.global_step, state.epoch))
        if state.global_step == self.stop_at:
            control.should_training_stop = True


def make_trainer(output_dir: str, steps: Steps) -> Trainer:
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    torch.manual_seed(0)  # the same initial weights and samples on every rank
    samples = [{"x": torch.randn(4), "labels": torch.randn(1)} for _ in range(16)]
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=4,
        save_steps=2,
        per_device_train_batch_size=2,
        use_cpu=True,
        ddp_find_unused_parameters=False,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
    )
    trainer = Trainer(
        model=TinyModel(TinyConfig()),
        args=args,
        train_dataset=samples,
        callbacks=[steps],
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def train_two_steps(rank: int, directory: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
        LOCAL_WORLD_SIZE=str(WORLD_SIZE),
    )
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(directory, 'rendezvous')}",
        rank=rank,
        world_size=WORLD_SIZE,
    )
    make_trainer(os.path.join(directory, "output"), Steps(stop_at=2)).train()
    dist.destroy_process_group()


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        # fork: the ranks inherit the imported modules instead of importing them again
        mp.start_processes(
            train_two_steps, args=(directory,), nprocs=WORLD_SIZE, start_method="fork"
        )
        checkpoint = os.path.join(directory, "output", "checkpoint-2")
        files = sorted(os.listdir(checkpoint))
        with open(os.path.join(checkpoint, "trainer_state.json")) as file:
            saved_epoch = json.load(file)["epoch"]
        steps = Steps()
        try:
            make_trainer(os.path.join(directory, "output"), steps).train(
                resume_from_checkpoint=checkpoint
            )
        except Exception as error:  # a refusal of the other world size
            print(f"NOT REPRODUCED: the one-rank resume raised {error!r}")
            return 1
    if not steps.ends:
        print("NOT REPRODUCED: the one-rank resume trained no step")
        return 1
    print(
        f"REPRODUCED: checkpoint-2 written by {WORLD_SIZE} ranks at epoch {saved_epoch} "
        f"({files}) resumed on 1 rank without an error; (step, epoch) at the resumed steps' "
        f"ends: {steps.ends}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
