"""Reproduces: COMMIT-4 (accelerate 1.15.0).

In ``Accelerator.save_state()`` each rank writes its own ``random_states_<rank>.pkl`` into
``checkpoints/checkpoint_<n>/`` (rank 0 also writes the model and optimizer files) and returns;
nothing tells rank 0 that another rank's writes failed, and nothing removes the folder.

Two gloo ranks save a complete ``checkpoint_0``, then a second ``save_state()`` in which rank 1's
write of ``random_states_1.pkl`` raises ``OSError(EIO)``; then both ranks call ``load_state()``
with no path, as a restarted job would. Exit 0 and ``REPRODUCED`` when rank 0's save returns
normally and ``checkpoint_1``, the latest folder, stays without rank 1's file; exit 1 and
``NOT REPRODUCED`` when the failure reaches rank 0 or the folder is not left as the latest.
"""

import errno
import json
import os
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration

WORLD_SIZE = 2


def save_twice(rank: int, directory: str) -> None:
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
    accelerator = Accelerator(
        cpu=True,
        project_config=ProjectConfiguration(
            project_dir=os.path.join(directory, "project"), automatic_checkpoint_naming=True
        ),
    )
    model = torch.nn.Linear(4, 1)
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=0.01))
    accelerator.backward(model(torch.ones(2, 4)).square().mean())
    optimizer.step()
    accelerator.save_state()

    if rank == 1:
        real_save = torch.save

        def failing_save(obj: object, f: object, *args: object, **kwargs: object) -> None:
            if os.path.basename(str(f)) == "random_states_1.pkl":
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(f))
            real_save(obj, f, *args, **kwargs)

        torch.save = failing_save
    try:
        accelerator.save_state()
        saved = "returned normally"
    except OSError as error:
        saved = f"raised OSError({errno.errorcode[error.errno]})"
    dist.barrier()  # rank 0 may still be writing checkpoint_1 when rank 1's save has raised
    try:
        accelerator.load_state()
        loaded = "succeeded"
    except Exception as error:  # a refused resume is what the invariant asks for
        loaded = f"raised {type(error).__name__}"
    with open(os.path.join(directory, f"outcome_{rank}.json"), "w") as file:
        json.dump({"save": saved, "load": loaded}, file)
    dist.destroy_process_group()


def main() -> int:
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        mp.spawn(save_twice, args=(directory,), nprocs=WORLD_SIZE)
        outcomes = []
        for rank in range(WORLD_SIZE):
            with open(os.path.join(directory, f"outcome_{rank}.json")) as file:
                outcomes.append(json.load(file))
        checkpoints = os.path.join(directory, "project", "checkpoints")
        folders = sorted(os.listdir(checkpoints), key=lambda name: int(name.split("_")[1]))
        files = sorted(os.listdir(os.path.join(checkpoints, folders[-1])))
    if outcomes[1]["save"] == "returned normally":
        raise RuntimeError("the injected failure on rank 1 did not fire")
    if (
        outcomes[0]["save"] == "returned normally"
        and folders[-1] == "checkpoint_1"
        and "random_states_1.pkl" not in files
    ):
        print(
            f"REPRODUCED: rank 1's save_state() {outcomes[1]['save']}, rank 0's "
            f"{outcomes[0]['save']}; the latest folder checkpoints/checkpoint_1 stays with "
            f"{files} (no random_states_1.pkl), and load_state() then "
            f"{outcomes[0]['load']} on rank 0 and {outcomes[1]['load']} on rank 1"
        )
        return 0
    print(
        f"NOT REPRODUCED: rank 0's save_state() {outcomes[0]['save']}; "
        f"folders {folders}, the latest holds {files}"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
