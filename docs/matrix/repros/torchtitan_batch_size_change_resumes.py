"""Reproduces: RESUME-5 (torchtitan 0.3.0).

A torchtitan job's global batch size is its local batch size times its gradient accumulation
steps times its data-parallel degree. ``CheckpointManager`` records none of them: the data loader's
state holds its position, not its batch size, and the trainer's state its step. A resume with
another batch size or accumulation continues the run under another optimisation schedule,
without a refusal.

The script (gloo group of one process) trains one step at local batch 2 with 1 accumulation step
(global batch 2) and calls ``save(1)``, then builds the job again at local batch 4 with 2
accumulation steps (global batch 8) and calls ``load(step=1)``. Exit 0 and ``REPRODUCED`` when the
load returns and the resumed job draws batches of the new size; exit 1 and ``NOT REPRODUCED``
when the load is refused.
"""

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
    accumulation_steps: int


def start(directory: str, local_batch_size: int, accumulation_steps: int) -> Job:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
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
    dataloader = ParallelAwareDataloader(
        Stream(), dp_rank=0, dp_world_size=1, batch_size=local_batch_size
    )
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
    return Job(model, optimizers, lr_schedulers, dataloader, state, manager, accumulation_steps)


def train_step(job: Job) -> list[int]:
    """One optimizer step over ``accumulation_steps`` micro-batches, as torchtitan's trainer
    does; the micro-batch sizes."""
    sizes = []
    batches = iter(job.dataloader)
    for _ in range(job.accumulation_steps):
        x, y = next(batches)
        (F.mse_loss(job.model(x), y) / job.accumulation_steps).backward()
        sizes.append(len(x))
    job.optimizers.step()
    job.lr_schedulers.step()
    job.optimizers.zero_grad()
    job.state.step += 1
    return sizes


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        dist.init_process_group(
            "gloo", init_method=f"file://{directory}/group", rank=0, world_size=1
        )
        saved = start(directory, local_batch_size=2, accumulation_steps=1)
        train_step(saved)
        saved.manager.save(1)
        saved.manager.close()
        recorded = dcp.FileSystemReader(f"{directory}/checkpoint/step-1").read_metadata()
        entries = sorted(k for k in recorded.state_dict_metadata if not k.startswith("optimizer"))

        resumed = start(directory, local_batch_size=4, accumulation_steps=2)
        try:
            resumed.manager.load(step=1)
        except (Exception, dcp.CheckpointException) as error:  # the latter is a BaseException
            refusal: BaseException | None = error
        else:
            refusal = None
            sizes = train_step(resumed)
        resumed.manager.close()
        dist.destroy_process_group()

    if refusal is not None:
        print(f"NOT REPRODUCED: load(step=1) at another batch size raised {refusal!r}")
        return 1
    print(
        "REPRODUCED: a checkpoint written at global batch 2 (local 2 x 1 accumulation step) "
        "loaded at global batch 8 (local 4 x 2) without an error; the step after it "
        f"(step {resumed.state.step}) trained on micro-batches of {sizes} samples; the "
        f"checkpoint's entries besides the optimizer's: {entries}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
