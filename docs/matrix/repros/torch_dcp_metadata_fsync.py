"""Reproduces: COMMIT-5 (torch.distributed.checkpoint 2.13.0).

``FileSystemWriter(sync_files=True).finish`` pickles the checkpoint's ``.metadata`` into a
buffered stream and calls ``os.fsync`` on its descriptor before the stream is flushed: a
``.metadata`` smaller than the stream's buffer is still empty on disk when it is fsynced, then
renamed into place. A power loss after ``dcp.save`` returned may leave it empty.

The script records the file's size at each fsync of ``.metadata.tmp``. Exit 0 and
``REPRODUCED`` when it was fsynced shorter than its final size; exit 1 and ``NOT REPRODUCED``
when its whole content was on disk at that fsync.
"""

import os
import sys
import tempfile
import warnings

import torch
import torch.distributed.checkpoint as dcp

sizes_at_fsync: list[int] = []
real_fsync = os.fsync


def recording_fsync(fd: int) -> None:
    if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == ".metadata.tmp":
        sizes_at_fsync.append(os.fstat(fd).st_size)
    real_fsync(fd)


def main() -> int:
    os.fsync = recording_fsync
    warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
    with tempfile.TemporaryDirectory() as directory:
        dcp.save(
            {"model": torch.nn.Linear(4, 1).state_dict()},
            storage_writer=dcp.FileSystemWriter(directory, sync_files=True),
        )
        final = os.path.getsize(os.path.join(directory, ".metadata"))
    if not sizes_at_fsync:
        print("NOT REPRODUCED: .metadata.tmp was never fsynced")
        return 1
    if sizes_at_fsync[-1] < final:
        print(
            f"REPRODUCED: .metadata.tmp was {sizes_at_fsync[-1]} bytes at its fsync, "
            f".metadata is {final} bytes"
        )
        return 0
    print(f"NOT REPRODUCED: .metadata.tmp was fsynced at its full size ({final} bytes)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
