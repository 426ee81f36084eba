"""Reproduces: RESUME-6 (torchtitan 0.3.0).

torchtitan's ``CheckpointManager`` saves with ``torch.distributed.checkpoint`` (DCP), which
records no digest of the files it writes; ``load()`` reads each item of a shard and copies it
into the live tensor at once. A damaged shard is not refused before live state changes.

The script (gloo group of one process) trains and saves steps 1 and 2, trains a third step,
flips one bit in the middle of ``step-1/__0_0.distcp`` and calls ``load(step=1)``, then cuts the
last byte off ``step-2/__0_0.distcp`` and calls ``load(step=2)``, comparing the live model and
optimizer tensors with the saved ones and with those before each load. Exit 0 and ``REPRODUCED`` when a damaged shard loads
or a failing load changed live state; exit 1 and ``NOT REPRODUCED`` when both loads fail with
live state unchanged.
"""

import os
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

WIDTH = 256  # large enough that tensor bytes fill the middle of the shard
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
            yield torch.randn(WIDTH, generator=generator), torch.randn(1, generator=generator)

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


def start(directory: str) -> Job:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(WIDTH, WIDTH), torch.nn.Linear(WIDTH, 1))
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


def live_tensors(job: Job) -> dict[str, torch.Tensor]:
    """A copy of every live model and optimizer tensor."""
    state = {f"model.{k}": v for k, v in job.model.state_dict().items()}
    state |= {f"optimizer.{k}": v for k, v in job.optimizers.state_dict().items()}
    return {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


def item_at(step_folder: str, offset: int) -> str:
    """The checkpoint item whose bytes in ``__0_0.distcp`` hold ``offset``."""
    storage = dcp.FileSystemReader(step_folder).read_metadata().storage_data
    for index, info in storage.items():
        if info.relative_path == "__0_0.distcp" and 0 <= offset - info.offset < info.length:
            return index.fqn
    raise LookupError(offset)


def load(job: Job, step: int) -> str:
    """``load(step)``; the name of the exception it raised, or ``"no error"``."""
    try:
        job.manager.load(step=step)
    except (Exception, dcp.CheckpointException) as error:  # the latter is a BaseException
        return type(error).__name__
    return "no error"


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        dist.init_process_group(
            "gloo", init_method=f"file://{directory}/group", rank=0, world_size=1
        )
        job = start(directory)
        train_step(job)
        job.manager.save(1)
        saved_1 = live_tensors(job)
        train_step(job)
        job.manager.save(2)
        saved_2 = live_tensors(job)
        train_step(job)

        step_1 = os.path.join(job.manager.folder, "step-1")
        with open(os.path.join(step_1, "__0_0.distcp"), "r+b") as file:
            middle = os.fstat(file.fileno()).st_size // 2
            file.seek(middle)
            byte = file.read(1)[0]
            file.seek(middle)
            file.write(bytes([byte ^ 0x01]))
        flipped_item = item_at(step_1, middle)
        flip_outcome = load(job, 1)
        not_as_saved = differing(saved_1, live_tensors(job))

        shard_2 = os.path.join(job.manager.folder, "step-2", "__0_0.distcp")
        os.truncate(shard_2, os.path.getsize(shard_2) - 1)
        before = live_tensors(job)
        truncate_outcome = load(job, 2)
        after = live_tensors(job)
        changed = differing(before, after)
        to_step_2 = [k for k in changed if torch.equal(after[k], saved_2[k])]

        job.manager.close()
        dist.destroy_process_group()

    flip_faulty = flip_outcome == "no error"
    truncate_faulty = truncate_outcome == "no error" or bool(changed)
    flip_text = (
        f"load(step=1) with one bit flipped at byte {middle} of __0_0.distcp (inside "
        f"{flipped_item}): {flip_outcome}, live tensors differing from saved: {not_as_saved}"
    )
    truncate_text = (
        f"load(step=2) with the last byte of __0_0.distcp cut off: {truncate_outcome}, "
        f"live tensors it changed: {changed} (to step 2's values: {to_step_2})"
    )
    if flip_faulty or truncate_faulty:
        print(f"REPRODUCED: {flip_text}; {truncate_text}")
        return 0
    print(f"NOT REPRODUCED: {flip_text}; {truncate_text}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
