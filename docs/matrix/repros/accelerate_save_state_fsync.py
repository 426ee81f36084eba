"""Reproduces: COMMIT-5 (accelerate 1.15.0).

``Accelerator.save_state()`` writes the model (safetensors), optimizer and RNG files into a new
``checkpoints/checkpoint_<n>/`` folder and returns; a power loss after it returned may lose
files, their contents, or the folders' entries unless each was fsynced before.

The script records every path passed to ``os.fsync`` / ``os.fdatasync`` during a
``save_state()`` and lists the checkpoint's files, and the directories whose entries it created
(the new folders and their parents), that were not fsynced. Exit 0 and ``REPRODUCED`` when any
was not; exit 1 and ``NOT REPRODUCED`` when all were.
"""

import os
import sys
import tempfile

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration

synced: set[str] = set()
real_fsync = os.fsync
real_fdatasync = os.fdatasync


def recording_fsync(fd: int) -> None:
    synced.add(os.readlink(f"/proc/self/fd/{fd}"))
    real_fsync(fd)


def recording_fdatasync(fd: int) -> None:
    synced.add(os.readlink(f"/proc/self/fd/{fd}"))
    real_fdatasync(fd)


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        project = os.path.realpath(directory)
        accelerator = Accelerator(
            cpu=True,
            project_config=ProjectConfiguration(
                project_dir=project, automatic_checkpoint_naming=True
            ),
        )
        model = torch.nn.Linear(4, 1)
        model, optimizer = accelerator.prepare(
            model, torch.optim.AdamW(model.parameters(), lr=0.01)
        )
        accelerator.backward(model(torch.ones(2, 4)).square().mean())
        optimizer.step()

        os.fsync, os.fdatasync = recording_fsync, recording_fdatasync
        checkpoint = os.path.realpath(accelerator.save_state())
        os.fsync, os.fdatasync = real_fsync, real_fdatasync

        files = [os.path.join(checkpoint, name) for name in sorted(os.listdir(checkpoint))]
        # checkpoint_<n>/ holds the files' entries, checkpoints/ holds checkpoint_<n>'s entry and
        # the project folder holds the entry of checkpoints/, which this first save created.
        directories = [checkpoint, os.path.dirname(checkpoint), project]
        missing = [
            os.path.relpath(path, project) for path in files + directories if path not in synced
        ]
    if missing:
        print(
            f"REPRODUCED: save_state() returned with {len(missing)} of "
            f"{len(files) + len(directories)} paths never fsynced ({len(synced)} fsync calls "
            f"in all): {missing}"
        )
        return 0
    print("NOT REPRODUCED: every checkpoint file and directory was fsynced before returning")
    return 1


if __name__ == "__main__":
    sys.exit(main())
