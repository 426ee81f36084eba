"""Reproduces: RESUME-3 (torchtitan 0.3.0).

torchtitan's ``ParallelAwareDataloader`` checkpoints its data-parallel world size, and
``load_state_dict`` refuses another one with an ``assert``. ``CheckpointManager.load()`` reaches
it only after DCP has copied the model into the live parameters, it raises ``AssertionError``
(the error of any failed internal check), and under ``python -O`` the check is gone.

The script saves step 1 at 2 ranks (gloo, ``torch.multiprocessing`` with fork), then calls
``load(step=1)`` at 1 rank, in this process and in a ``python -O`` subprocess. Exit 0 and
``REPRODUCED`` when the 1-rank load raises ``AssertionError`` or returns; exit 1 and
``NOT REPRODUCED`` when it is refused with another exception and live state unchanged.
"""

import json
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
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import IterableDataset
from torchtitan.components.checkpoint import CheckpointManager
from torchtitan.components.dataloader import ParallelAwareDataloader
from torchtitan.components.optimizer.lr_scheduler import LRSchedulersContainer
from torchtitan.components.optimizer.optimizer import OptimizersContainer, ParamGroupConfig

warnings.filterwarnings("ignore", message="'set_vital' is deprecated")


class Stream(IterableDataset):
    """This rank's share of a sample stream (sample ``i`` is drawn from a generator seeded with
    ``i``); checkpoints its position, like torchtitan's datasets."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size
        self.position = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            index = self.position * self.world_size + self.rank
            generator = torch.Generator().manual_seed(index)
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


def start(directory: str, group: str, rank: int, world_size: int) -> Job:
    """Join a gloo group and build the training objects of one data-parallel rank."""
    dist.init_process_group(
        "gloo", init_method=f"file://{directory}/{group}", rank=rank, world_size=world_size
    )
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(4, 1)))
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
        Stream(rank, world_size), dp_rank=rank, dp_world_size=world_size, batch_size=2
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
    return Job(model, optimizers, lr_schedulers, dataloader, state, manager)


def save_at_two_ranks(rank: int, directory: str) -> None:
    """Spawned rank: train one step and ``save(1)``."""
    job = start(directory, "group_save", rank, 2)
    x, y = next(iter(job.dataloader))
    F.mse_loss(job.model(x), y).backward()
    job.optimizers.step()
    job.lr_schedulers.step()
    job.optimizers.zero_grad()
    job.state.step = 1
    job.manager.save(1)
    job.manager.close()
    dist.destroy_process_group()


def load_at_one_rank(directory: str, group: str) -> dict[str, Any]:
    """``load(step=1)`` at 1 rank: the error it raised (``None`` if it returned) and the live
    state it changed."""
    job = start(directory, group, 0, 1)
    before = {k: v.clone() for k, v in job.model.state_dict().items()}
    try:
        job.manager.load(step=1)
        error = None
    except (Exception, dcp.CheckpointException) as raised:  # the latter is a BaseException
        error = f"{type(raised).__name__}: {raised}"
    changed = [k for k, v in job.model.state_dict().items() if not torch.equal(v, before[k])]
    if job.state.step != 0:
        changed.append("train_state.step")
    job.manager.close()
    dist.destroy_process_group()
    return {"error": error, "changed": changed}


def describe(result: dict[str, Any]) -> str:
    outcome = result["error"] or "load(step=1) returned"
    return f"{outcome} (live state changed: {result['changed']})"


def faulty(result: dict[str, Any]) -> bool:
    error = result["error"]
    return error is None or error.startswith("AssertionError") or bool(result["changed"])


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        # fork: the ranks reuse this process's imports (start-up time) instead of their own
        mp.start_processes(save_at_two_ranks, args=(directory,), nprocs=2, start_method="fork")
        plain = load_at_one_rank(directory, "group_load")
        child = subprocess.run(
            [sys.executable, "-O", __file__, "load", directory],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        optimized = json.loads(child.stdout)
    text = (
        f"load(step=1) of a 2-rank checkpoint at 1 rank: {describe(plain)}; "
        f"under python -O: {describe(optimized)}"
    )
    if faulty(plain) or faulty(optimized):
        print(f"REPRODUCED: {text}")
        return 0
    print(f"NOT REPRODUCED: {text}")
    return 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["load"]:
        print(json.dumps(load_at_one_rank(sys.argv[2], "group_load_optimized")))
    else:
        sys.exit(main())
