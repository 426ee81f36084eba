"""Reproduces: RESUME-8 (torchtitan 0.3.0).

torchtitan's ``CheckpointManager`` saves the model, the ``OptimizersContainer``, the
``LRSchedulersContainer``, the data loader and the train state, but no random number generator
state: a resumed run draws other dropout masks than the run that never stopped.

The script trains one step of a model with ``torch.nn.Dropout`` (gloo group of one process),
calls ``save(1)`` and records ``torch.get_rng_state()``. A fresh process builds the same objects,
seeded as at start-up, and calls ``load(step=1)``. Exit 0 and ``REPRODUCED`` when its RNG state
after ``load()`` is not the one at ``save(1)``; exit 1 and ``NOT REPRODUCED`` when it is.
"""

import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch.utils.data import IterableDataset
from torchtitan.components.checkpoint import CheckpointManager
from torchtitan.components.dataloader import ParallelAwareDataloader
from torchtitan.components.optimizer.lr_scheduler import LRSchedulersContainer
from torchtitan.components.optimizer.optimizer import OptimizersContainer, ParamGroupConfig

SEED = 0
warnings.filterwarnings("ignore", message="'set_vital' is deprecated")


class Stream(IterableDataset):
    """Sample ``i`` is drawn from a generator seeded with ``i``; checkpoints its position, like
    torchtitan's datasets."""

    def __init__(self) -> None:
        self.position = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            generator = torch.Generator().manual_seed(self.position)
            self.position += 1
            yield torch.randn(4, generator=generator), torch.randn(1, generator=generator)

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = state["position"]


class TrainState:
    """The step counter, checkpointed like torchtitan's ``Trainer`` checkpoints its own."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]


@dataclass
class Job:
    model: torch.nn.Module
    optimizers: OptimizersContainer
    lr_schedulers: LRSchedulersContainer
    dataloader: ParallelAwareDataloader
    state: TrainState
    manager: CheckpointManager


def start(directory: str, name: str) -> Job:
    """Seed, build the training objects and their ``CheckpointManager`` as a job does at start-up."""
    dist.init_process_group("gloo", init_method=f"file://{directory}/{name}", rank=0, world_size=1)
    torch.manual_seed(SEED)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
    optimizers = OptimizersContainer(
        OptimizersContainer.Config(
            param_groups=[
                ParamGroupConfig(pattern=r".*", optimizer_name="AdamW", optimizer_kwargs={})
            ],
            implementation="for-loop",  # the default, "fused", needs CUDA
        ),
        model_parts=[model],
    )
    lr_schedulers = LRSchedulersContainer(optimizers, lambda step: 1.0)
    dataloader = ParallelAwareDataloader(Stream(), dp_rank=0, dp_world_size=1, batch_size=2)
    state = TrainState()
    manager = CheckpointManager(
        CheckpointManager.Config(enable=True, interval=1, last_save_model_only=False),
        dataloader=dataloader,
        model_parts=[model],
        optimizers=optimizers,
        lr_schedulers=lr_schedulers,
        states={"train_state": state},
        sd_adapter=None,
        base_folder=directory,
    )
    return Job(model, optimizers, lr_schedulers, dataloader, state, manager)


def train_step(job: Job) -> None:
    x, y = next(iter(job.dataloader))
    F.mse_loss(job.model(x), y).backward()
    job.optimizers.step()
    job.lr_schedulers.step()
    job.optimizers.zero_grad()
    job.state.step += 1


def load_in_fresh_process(directory: str) -> None:
    """Child: start up, ``load(step=1)``, write the RNG state to ``rng_after_load``."""
    job = start(directory, "group_load")
    job.manager.load(step=1)
    with open(os.path.join(directory, "rng_after_load"), "wb") as file:
        file.write(torch.get_rng_state().numpy().tobytes())
    job.manager.close()
    dist.destroy_process_group()


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        job = start(directory, "group_save")
        at_start = torch.get_rng_state().numpy().tobytes()
        train_step(job)
        job.manager.save(1)
        at_save = torch.get_rng_state().numpy().tobytes()
        metadata = dcp.FileSystemReader(f"{directory}/checkpoint/step-1").read_metadata()
        model_keys = job.model.state_dict().keys()
        saved = sorted(
            {key.split(".")[0] for key in metadata.state_dict_metadata if key not in model_keys}
        )
        job.manager.close()
        dist.destroy_process_group()

        subprocess.run(
            [sys.executable, __file__, "load", directory],
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        with open(os.path.join(directory, "rng_after_load"), "rb") as file:
            after_load = file.read()

    if at_save == at_start:
        print("NOT REPRODUCED: the training step drew no random numbers")
        return 1
    if after_load == at_save:
        print("NOT REPRODUCED: load(step=1) restored the CPU RNG state of save(1)")
        return 1
    print(
        "REPRODUCED: after load(step=1) in a fresh process, torch.get_rng_state() differs from "
        f"the state at save(1); the checkpoint holds the model and {saved}, no RNG state"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["load"]:
        load_in_fresh_process(sys.argv[2])
    else:
        sys.exit(main())
