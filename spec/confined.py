"""Reading the files of a checkpoint directory without ever leaving it (LAYOUT-5, LAYOUT-6).

The directory is listed once with ``lstat`` semantics (symbolic links are never followed by the
walk). A listed path that goes through a symbolic link is resolved, and used only if the target
stays inside the directory; files are opened by their resolved path with ``O_NOFOLLOW``, so no
file is ever opened through a link that leaves the directory. Nothing here writes.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Literal

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


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
    real_path: str | None = None
    size: int | None = None
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
        return Resolved(
            "not_regular", detail="is a symbolic link to something that is not a regular file"
        )
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
    if link_ancestor(tree, rel) is not None:
        return _through_link(real_root, full)
    return Resolved("missing", detail="does not exist")


def link_ancestor(tree: dict[str, os.stat_result], rel: str) -> str | None:
    """The ancestor of ``rel`` through which it leads into a symbolic link, if there is one.

    ``tree`` (from :func:`scan_tree`) is closed under taking ancestors, and the walk never
    descends into a link, so the only ancestor that can be a link is the deepest one present:
    it is found by a binary search over the ``/`` positions, in O(len(rel) log depth) time
    (not quadratic in the depth).
    """
    cuts = [i for i, ch in enumerate(rel) if ch == "/"]
    lo, hi = 0, len(cuts)  # lo: how many leading ancestors are known to be present
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if rel[: cuts[mid - 1]] in tree:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return None
    ancestor = rel[: cuts[lo - 1]]
    return ancestor if stat.S_ISLNK(tree[ancestor].st_mode) else None


def open_regular(real_path: str) -> int:
    """A read-only descriptor of the regular file at ``real_path``.

    Opening never blocks (``O_NONBLOCK``: a FIFO swapped in after the directory was listed does
    not hang the reader) and never follows a final symbolic link; anything but a regular file
    raises ``OSError`` (``EINVAL``, "not a regular file"), as does a file that cannot be opened.
    """
    fd = os.open(real_path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", real_path)
    return fd
