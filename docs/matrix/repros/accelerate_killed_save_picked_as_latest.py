"""Reproduces: COMMIT-2 (accelerate 1.15.0).

With ``ProjectConfiguration(automatic_checkpoint_naming=True)``, ``Accelerator.save_state()``
creates ``checkpoints/checkpoint_<n>/`` first and then writes the checkpoint's files into it in
place; ``load_state()`` with no path resumes the highest-numbered folder, complete or not.

A child process saves ``checkpoint_0``, starts a second save and is killed (SIGKILL) right after
that save created ``checkpoint_1/``. This process, fresh, then calls ``load_state()``. Exit 0 and
``REPRODUCED`` when it fails although ``load_state(".../checkpoint_0")`` succeeds; exit 1 and
``NOT REPRODUCED`` when ``load_state()`` resumes a complete checkpoint.
"""

import os
import signal
import sys
import tempfile

import torch
import torch.multiprocessing as mp
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration


def build(directory: str) -> tuple[Accelerator, torch.nn.Module, torch.optim.Optimizer]:
    accelerator = Accelerator(
        cpu=True,
        project_config=ProjectConfiguration(
            project_dir=directory, automatic_checkpoint_naming=True
        ),
    )
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    model, optimizer = accelerator.prepare(model, optimizer)
    return accelerator, model, optimizer


def train_step(
    accelerator: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    accelerator.backward(model(torch.ones(2, 4)).square().mean())
    optimizer.step()
    optimizer.zero_grad()


def save_twice(_rank: int, directory: str) -> None:
    accelerator, model, optimizer = build(directory)
    train_step(accelerator, model, optimizer)
    accelerator.save_state()

    real_makedirs = os.makedirs

    def makedirs_then_die(name: str, *args: object, **kwargs: object) -> None:
        real_makedirs(name, *args, **kwargs)
        if os.path.basename(name) == "checkpoint_1":
            os.kill(os.getpid(), signal.SIGKILL)

    os.makedirs = makedirs_then_die
    train_step(accelerator, model, optimizer)
    accelerator.save_state()


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        try:
            mp.spawn(save_twice, args=(directory,), nprocs=1)
        except mp.ProcessExitedException as exited:
            if exited.signal_name != "SIGKILL":
                raise
        else:
            raise RuntimeError("the second save_state() was not killed")
        checkpoints = os.path.join(directory, "checkpoints")
        partial = sorted(os.listdir(os.path.join(checkpoints, "checkpoint_1")))

        accelerator, _, _ = build(directory)
        try:
            accelerator.load_state()
        except Exception as error:  # any failure of the resume is the finding
            failure = f"{type(error).__name__}: {error}".replace(directory, "<project_dir>")
        else:
            print("NOT REPRODUCED: load_state() resumed a complete checkpoint")
            return 1
        accelerator.load_state(os.path.join(checkpoints, "checkpoint_0"))
    print(
        f"REPRODUCED: load_state() picked checkpoints/checkpoint_1 (contents {partial}) left by "
        f"the killed save and raised {failure}; load_state('.../checkpoint_0') succeeds"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
