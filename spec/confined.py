"""Reading the files of a checkpoint directory without ever leaving it (LAYOUT-5, LAYOUT-6).

The directory is listed once with ``lstat`` semantics (symbolic links are never followed by the
walk). A listed path that goes through a symbolic link is resolved, and used only if the target
stays inside the directory; files are opened by their resolved path with ``O_NOFOLLOW``, so no
file is ever opened through a link that leaves the directory. Nothing here writes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Literal, Optional

HASH_CHUNK_BYTES = 4 * 1024 * 1024
"""Read size when hashing: large enough that per-call overhead is negligible."""

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def scan_tree(root: str) -> dict[str, os.stat_result]:
    """Every entry under ``root`` by its ``/``-separated relative path, with its ``lstat`` result.

    Symbolic links are recorded, not followed; unreadable subdirectories are skipped.
    """
    entries: dict[str, os.stat_result] = {}
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
                for entry in it:
                    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    entries[rel] = st
                    if stat.S_ISDIR(st.st_mode):
                        pending.append(rel)
        except OSError:
            continue
    return entries


Status = Literal["ok", "missing", "not_regular", "escapes"]


@dataclass(frozen=True)
class Resolved:
    """Where a listed path leads: ``real_path`` and ``size`` are set only when ``status`` is ``ok``."""

    status: Status
    real_path: Optional[str] = None
    size: Optional[int] = None
    detail: str = ""


def is_inside(real_root: str, real_path: str) -> bool:
    """Whether the resolved ``real_path`` is ``real_root`` or lies below it."""
    return real_path == real_root or real_path.startswith(real_root.rstrip(os.sep) + os.sep)


def _through_link(real_root: str, full_path: str) -> Resolved:
    real = os.path.realpath(full_path)  # reads links; opens nothing
    if not is_inside(real_root, real):
        return Resolved("escapes", detail=f"resolves to {real}, outside the checkpoint directory")
    try:
        st = os.lstat(real)
    except OSError:
        return Resolved("missing", detail="is a symbolic link to a file that does not exist")
    if not stat.S_ISREG(st.st_mode):
        return Resolved("not_regular", detail="is a symbolic link to something that is not a regular file")
    return Resolved("ok", real, st.st_size)


def resolve(root: str, real_root: str, tree: dict[str, os.stat_result], rel: str) -> Resolved:
    """Resolve a manifest path ``rel`` (already known to be relative and normalised) inside ``root``."""
    full = f"{root}{os.sep}{rel}"  # rel is normalised and `/`-separated, as on POSIX
    st = tree.get(rel)
    if st is not None:
        if stat.S_ISREG(st.st_mode):
            return Resolved("ok", full, st.st_size)
        if stat.S_ISLNK(st.st_mode):
            return _through_link(real_root, full)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        return Resolved("not_regular", detail=f"is {kind}")
    parts = rel.split("/")
    for i in range(len(parts) - 1, 0, -1):
        ancestor = tree.get("/".join(parts[:i]))
        if ancestor is not None:
            if stat.S_ISLNK(ancestor.st_mode):
                return _through_link(real_root, full)
            break
    return Resolved("missing", detail="does not exist")


def sha256_file(real_path: str) -> str:
    """SHA-256 of the regular file at ``real_path``, streamed; raises ``OSError`` if it cannot be read."""
    fd = os.open(real_path, os.O_RDONLY | _O_NOFOLLOW)
    with os.fdopen(fd, "rb", buffering=0) as f:
        h = hashlib.sha256()
        buf = bytearray(HASH_CHUNK_BYTES)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
        return h.hexdigest()
