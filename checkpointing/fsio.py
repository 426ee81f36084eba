"""Durable file-system primitives of the checkpoint library, and the run lock.

One owner: durable and atomic writes are here, and so is the digest of a written file (computed by
the same function the validator reads files with).

Every write here either completes durably (data and directory entry fsynced) or raises.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from ckptspec.file_digest import digest_file


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or directory by path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (created or truncated), flushed and fsynced before returning."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically: temporary file, fsync, rename, fsync of the parent directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    write_durable(tmp, data)
    os.replace(tmp, path)
    fsync_path(path.parent)


def file_digest(path: Path, algorithm: str) -> tuple[int, str]:
    """The size in bytes and digest (``<algorithm>:<hex>``) of the regular file at ``path``,
    hashed by the validator's own reader (:func:`ckptspec.file_digest.digest_file`)."""
    size = os.stat(path).st_size
    return size, digest_file(os.fspath(path), algorithm, size)


def try_lock_exclusive(path: Path) -> int | None:
    """Take an exclusive ``flock`` on ``path`` (created empty if absent) without waiting.

    Returns the open descriptor that holds the lock, or None when another open file description
    holds it (another process, or another open of the file in this one). The kernel releases the
    lock when the descriptor is closed, including when the process dies. Other errors raise.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd
