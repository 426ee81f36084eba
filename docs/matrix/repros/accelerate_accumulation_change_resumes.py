"""Reproduces: RESUME-5 (accelerate 1.15.0).

``Accelerator.save_state()`` does not record ``gradient_accumulation_steps`` (nor the batch size),
so ``load_state()`` cannot compare them with the resuming run's: a resume with another global
batch size (micro-batch x accumulation steps x processes) goes on as if nothing changed.

A child process trains one optimizer step with ``gradient_accumulation_steps=2`` and saves; this
process, fresh, builds the same loop with ``gradient_accumulation_steps=4``, calls
``load_state()`` and trains one accumulation window, recording warnings and log records of level
WARNING or above, and which micro-batches stepped the optimizer. Exit 0 and ``REPRODUCED`` when
the resume completes with neither an error nor a warning; exit 1 and ``NOT REPRODUCED`` when it
raises or warns.
"""

import logging
import os
import sys
import tempfile
import warnings

import torch
import torch.multiprocessing as mp
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration
from torch.utils.data import DataLoader, TensorDataset

MICRO_BATCH = 2


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def train_one_step(
    directory: str, accumulation_steps: int, resume: bool
) -> tuple[Accelerator, list[bool]]:
    """Runs one accumulation window; returns the accelerator and, per micro-batch, whether the
    gradients were synchronised (the optimizer really stepped)."""
    accelerator = Accelerator(
        cpu=True,
        gradient_accumulation_steps=accumulation_steps,
        project_config=ProjectConfiguration(
            project_dir=directory, automatic_checkpoint_naming=True
        ),
    )
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    model = torch.nn.Linear(4, 1)
    model, optimizer, loader = accelerator.prepare(
        model,
        torch.optim.AdamW(model.parameters(), lr=0.01),
        DataLoader(data, batch_size=MICRO_BATCH),
    )
    if resume:
        accelerator.load_state()
    batches = iter(loader)
    synced = []
    for _ in range(accumulation_steps):
        x, y = next(batches)
        with accelerator.accumulate(model):
            accelerator.backward(torch.nn.functional.mse_loss(model(x), y))
            optimizer.step()
            optimizer.zero_grad()
            synced.append(accelerator.sync_gradients)
    return accelerator, synced


def save(_rank: int, directory: str) -> None:
    accelerator, _ = train_one_step(directory, accumulation_steps=2, resume=False)
    accelerator.save_state()


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        mp.spawn(save, args=(directory,), nprocs=1)

        recorder = Recorder()
        logging.getLogger().addHandler(recorder)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                accelerator, synced = train_one_step(directory, accumulation_steps=4, resume=True)
            except Exception as error:  # a refused resume is what the invariant asks for
                print(f"NOT REPRODUCED: the resume raised {type(error).__name__}: {error}")
                return 1
    complaints = recorder.messages + [str(warning.message) for warning in caught]
    if complaints:
        print(f"NOT REPRODUCED: the resume warned: {complaints}")
        return 1
    print(
        "REPRODUCED: a checkpoint saved with gradient_accumulation_steps=2 (global batch "
        f"{2 * MICRO_BATCH}) resumed with gradient_accumulation_steps="
        f"{accelerator.gradient_accumulation_steps} (global batch "
        f"{accelerator.gradient_accumulation_steps * MICRO_BATCH}) and trained on, with no "
        f"error and no warning; optimizer stepped per micro-batch of the first resumed window: "
        f"{synced} (load_state() restores the micro-batch counter, counted at 2 per window)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
