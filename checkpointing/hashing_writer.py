"""A DCP ``FileSystemWriter`` that computes each file's size and digest while writing it.

The manifest needs the digest of every payload file; hashing the bytes on their way to disk
saves reading the files back. A file is recorded only if it was written strictly sequentially
from its start (no seek), so the recorded digest is the digest of its final contents; any other
file is absent from :attr:`HashingFileSystem.digests` and the caller hashes it from disk.

A large chunk is hashed on a helper thread while the calling thread writes the same chunk
(both release the GIL), and ``write`` returns only when both are done, so the caller's buffer
is never read after it returns. Where a rank has a spare core this hides most of the hashing
behind the write.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.filesystem import FileSystem

from ckptspec.file_digest import format_digest, new_hasher

CONCURRENT_HASH_BYTES = 1 << 20
"""Chunks at least this large are hashed on the helper thread while they are written."""


class _HashingStream:
    """Forwards everything to the file; hashes what is written while writes stay sequential."""

    def __init__(self, raw: Any, algorithm: str, hasher: ThreadPoolExecutor) -> None:
        self._raw = raw
        self._hasher = hasher
        self.hash = new_hasher(algorithm)
        self.size = 0
        self.sequential = True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if len(view) < CONCURRENT_HASH_BYTES:
            written = self._raw.write(view)
            self.hash.update(view[:written])
        else:
            hashed = self._hasher.submit(self.hash.update, view)
            try:
                written = self._raw.write(view)
            finally:
                hashed.result()
            self.sequential = self.sequential and written == len(
                view
            )  # else the digest is not the file's
        self.size += written
        return written

    def seek(self, *args: Any) -> int:
        position = self._raw.seek(*args)
        self.sequential = self.sequential and position == self.size
        return position

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class HashingFileSystem(FileSystem):
    """DCP's local file system, recording ``digests[path] = (size, "<algorithm>:<hex>")`` of
    written files."""

    def __init__(self, algorithm: str) -> None:
        super().__init__()
        self.algorithm = algorithm
        self.digests: dict[Path, tuple[int, str]] = {}
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckptspec-file-digest")

    @contextmanager
    def create_stream(self, path: str | os.PathLike[str], mode: str) -> Generator[Any, None, None]:
        with super().create_stream(path, mode) as raw:
            if mode != "wb":
                yield raw
                return
            stream = _HashingStream(raw, self.algorithm, self._hasher)
            yield stream
        if stream.sequential:
            self.digests[Path(path)] = (
                stream.size,
                format_digest(self.algorithm, stream.hash.hexdigest()),
            )

    def rename(self, path: str | os.PathLike[str], new_path: str | os.PathLike[str]) -> None:
        super().rename(path, new_path)
        if Path(path) in self.digests:
            self.digests[Path(new_path)] = self.digests.pop(Path(path))


def hashing_writer(
    path: Path, algorithm: str, cache_staged_state_dict: bool = False
) -> FileSystemWriter:
    """A ``FileSystemWriter`` for ``path`` (fsyncing its files) whose ``fs.digests`` fills with
    ``algorithm`` digests as it writes. ``cache_staged_state_dict`` keeps the host buffers of an asynchronous save for the
    next one (the writer must then be reused, one save at a time)."""
    writer = FileSystemWriter(
        path, sync_files=True, cache_staged_state_dict=cache_staged_state_dict
    )
    writer.fs = HashingFileSystem(algorithm)
    return writer
