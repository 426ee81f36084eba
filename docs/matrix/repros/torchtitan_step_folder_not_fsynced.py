"""Reproduces: COMMIT-5 (torchtitan 0.3.0).

torchtitan's ``CheckpointManager.save(step)`` writes ``<folder>/step-<step>`` with DCP's
``FileSystemWriter`` and treats a ``step-<N>`` folder holding ``.metadata`` as a checkpoint.
DCP fsyncs the files it writes, but neither DCP nor the manager fsyncs the new step folder (whose
entries name the shards and the ``.metadata`` renamed into place) or the checkpoint folder (whose
entry names the step folder): after ``save()`` returned, a power loss can lose the checkpoint.

The script (gloo group of one process) saves steps 1 and 2, records every ``os.fsync`` /
``os.fdatasync`` during ``save(2)`` with the size of the file at that moment, and lists the
files of ``step-2`` not fsynced at their final size and the folders not fsynced. Exit 0 and
``REPRODUCED`` when any is found; exit 1 and ``NOT REPRODUCED`` when everything was fsynced.
A file fsynced short of its final size would be listed too: DCP fsyncs ``.metadata.tmp`` before
flushing it (``torch_dcp_metadata_fsync.py``), which leaves a small ``.metadata`` short.
"""

import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import IterableDataset
from torchtitan.components.checkpoint import CheckpointManager
from torchtitan.components.dataloader import ParallelAwareDataloader
from torchtitan.components.optimizer.lr_scheduler import LRSchedulersContainer
from torchtitan.components.optimizer.optimizer import OptimizersContainer, ParamGroupConfig

warnings.filterwarnings("ignore", message="'set_vital' is deprecated")

synced: dict[str, list[int]] = {}  # path -> its size at each fsync
real_fsync, real_fdatasync = os.fsync, os.fdatasync


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


def recording(sync: Callable[[int], None]) -> Callable[[int], None]:
    def record(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        synced.setdefault(path, []).append(os.fstat(fd).st_size)
        sync(fd)

    return record


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        dist.init_process_group(
            "gloo", init_method=f"file://{directory}/group", rank=0, world_size=1
        )
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
        batches = iter(dataloader)
        for step in (1, 2):
            x, y = next(batches)
            F.mse_loss(model(x), y).backward()
            optimizers.step()
            lr_schedulers.step()
            optimizers.zero_grad()
            state.step = step
            if step == 2:
                os.fsync, os.fdatasync = recording(os.fsync), recording(os.fdatasync)
            manager.save(step)
        os.fsync, os.fdatasync = real_fsync, real_fdatasync
        folder = os.path.realpath(manager.folder)
        step_2 = os.path.join(folder, "step-2")
        short = []
        for name in sorted(os.listdir(step_2)):
            path = os.path.join(step_2, name)
            # DCP writes .metadata as .metadata.tmp, fsyncs it, then renames it
            sizes = synced.get(path, []) + synced.get(f"{path}.tmp", [])
            final = os.path.getsize(path)
            if not sizes:
                short.append(f"{name} (never)")
            elif max(sizes) < final:
                short.append(f"{name} ({max(sizes)} of {final} bytes)")
        folders = [
            os.path.relpath(path, os.path.dirname(folder))
            for path in (step_2, folder)
            if path not in synced
        ]
        manager.close()
        dist.destroy_process_group()

    text = (
        f"save(2) returned; folders not fsynced: {folders}; files of step-2 not fsynced at "
        f"their final size: {short}"
    )
    if folders or short:
        print(f"REPRODUCED: {text}")
        return 0
    print(f"NOT REPRODUCED: {text}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
