"""Deterministic crash points: interpose on the file-system calls a rank makes during an action.

Inside :func:`interpose`, every *mutation* under ``root`` is numbered in call order: opening a
file for writing (``open``/``io.open`` with a write mode, ``os.open`` with a write flag),
``os.rename``, ``os.replace``, ``os.fsync``/``os.fdatasync`` (of a descriptor under ``root``),
``os.symlink``, ``os.link``, ``os.unlink``/``os.remove``, ``os.rmdir``, ``os.mkdir``,
``os.truncate`` and ``os.ftruncate``. Higher-level helpers (``shutil.rmtree``, ``shutil.move``,
``os.makedirs``, ``pathlib``, DCP's file system writer) reach these functions through the ``os``
module and are seen as their parts. Files that torch and safetensors write from C++/Rust are
numbered where they are opened: ``torch.save`` to a path name (its zip-file writer) and
``safetensors.torch.save_file`` (its ``serialize_file``), when those modules are loaded. A
rename, replace or link into the root from outside it (a file staged in ``$TMPDIR``, as fsspec's
transactions do) is numbered too, its source shown as :data:`OUTSIDE_ROOT`.

A call that changes nothing never gets a fault: ``mkdir`` of a path that exists
(``os.makedirs(..., exist_ok=True)`` of an existing directory), or ``rename``, ``unlink``,
``rmdir`` of a path that does not. It is still numbered (whether another rank created the
directory first is a race, and numbering must not depend on it); a fault whose point is such a
no-op fires at the next call that does change something.

An injected ``EIO`` models a device that has failed, not a transient error: from its point on,
every call of that rank that changes something under the root raises it. (A one-shot error is
absorbed by fallbacks such as ``shutil.move``'s copy after a failed ``rename``, and the save then
rightly succeeds; it would test nothing about COMMIT-4.) A ``hold`` parks the rank just before
its point at a gate (:mod:`ckptspec.conformance.gate`) until the test releases it, so that the test
can act while a save is half done: start a second writer on the run (RUN-8).

With a ``journal`` directory in the fault (on every rank, whatever the fault's kind), each
completed mutation is also appended to ``<journal>/rank-<r>.jsonl`` as a :class:`JournalEntry`
for :mod:`ckptspec.conformance.crash_states`: ``create`` (a file, directory or link that did not
exist), ``write`` (a file opened for writing, ``trunc`` when its old content was discarded),
``sync`` (an fsync; for a file, its size and SHA-256 then, its bytes stored once under
``<journal>/blobs/<sha256>``), ``rename``, ``unlink`` and ``rmdir``. An entry is written after
its call returned, so a call that failed, or was stopped by the fault, has none; a file moved in
from outside the root is a ``create`` and a ``write`` of its destination.

The interposition is adapter-agnostic and exact: with the same code and the same state, a save
makes the same sequence of calls, so crash point *k* of a dry run is crash point *k* of a
faulted run.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import io
import json
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ckptspec.conformance.gate import arrive_and_wait
from ckptspec.conformance.phase import Fault, Mutation

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PATH_CALLS = (
    "rename",
    "replace",
    "symlink",
    "link",
    "unlink",
    "remove",
    "rmdir",
    "mkdir",
    "truncate",
)
_TWO_PATH_CALLS = ("rename", "replace", "symlink", "link")
_FD_CALLS = ("fsync", "fdatasync", "ftruncate")
OUTSIDE_ROOT = "<outside the output directory>"
"""How a mutation names a path outside the root (the source of a move into it): a temporary
name there would make reports differ from run to run."""


@dataclass(frozen=True)
class JournalEntry:
    """One completed file-system operation of a rank, for building power-loss states.

    ``op`` is ``create`` (``kind``: ``file``, ``dir`` or ``link``), ``write`` (``trunc``: the old
    content was discarded), ``sync`` (``kind`` ``file`` with its ``size`` and ``sha256`` at that
    moment, or ``dir``), ``rename`` (to ``dst``), ``unlink`` or ``rmdir``. Paths are relative to
    the root; ``time`` is ``time.monotonic()`` (one clock for the ranks of one machine) and
    ``seq`` the rank's own order."""

    time: float
    rank: int
    seq: int
    op: str
    path: str
    dst: str = ""
    kind: str = ""
    trunc: bool = False
    size: int = 0
    sha256: str = ""


BLOBS = "blobs"
"""The subdirectory of a journal holding file contents seen at fsync, named by SHA-256."""


def read_journal(directory: str | os.PathLike[str]) -> list[JournalEntry]:
    """Every rank's entries in ``directory``, in time order (ties by rank, then order)."""
    entries = []
    for path in sorted(Path(directory).glob("rank-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                entries.append(JournalEntry(**json.loads(line)))
    return sorted(entries, key=lambda e: (e.time, e.rank, e.seq))


class _Journal:
    """Appends a rank's :class:`JournalEntry` lines; each line is one ``write`` to an
    ``O_APPEND`` file, so a rank killed between calls leaves whole lines."""

    def __init__(self, directory: str, rank: int) -> None:
        self.rank = rank
        self.blobs = os.path.join(directory, BLOBS)
        os.makedirs(self.blobs, exist_ok=True)
        self.fd = os.open(
            os.path.join(directory, f"rank-{rank}.jsonl"),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o644,
        )
        self.seq = 0
        self._open, self._replace, self._write = (
            io.open,
            os.replace,
            os.write,
        )  # before they are patched

    def add(self, op: str, path: str, at: float | None = None, **fields: Any) -> None:
        self.seq += 1
        entry = JournalEntry(
            time.monotonic() if at is None else at, self.rank, self.seq, op, path, **fields
        )
        self._write(self.fd, (json.dumps(asdict(entry)) + "\n").encode())

    def sync(self, rel: str, real_path: str, started: float) -> None:
        """Record an fsync of ``real_path``: a directory, or a file with its bytes stored. Its
        time is when it ``started``: it persists only what was done before that."""
        if stat.S_ISDIR(os.stat(real_path).st_mode):
            self.add("sync", rel, at=started, kind="dir")
            return
        with self._open(real_path, "rb") as f:
            data = f.read()
        sha = hashlib.sha256(data).hexdigest()
        blob = os.path.join(self.blobs, sha)
        if not os.path.exists(blob):
            tmp = f"{blob}.{os.getpid()}.tmp"
            with self._open(tmp, "wb") as f:
                f.write(data)
            self._replace(tmp, blob)
        self.add("sync", rel, at=started, kind="file", size=len(data), sha256=sha)

    def close(self) -> None:
        os.close(self.fd)


class _Counter:
    def __init__(
        self, root: str, fault: Fault | None, rank: int, on_kill: Callable[[str], None]
    ) -> None:
        self.root = os.path.realpath(root)
        self.fault = (
            fault if fault is not None and fault.rank == rank and fault.kind != "count" else None
        )
        self.on_kill = on_kill
        self.log: list[Mutation] = []
        self.journal = (
            _Journal(fault.journal, rank) if fault is not None and fault.journal else None
        )

    def record(self, op: str, path: Any, dst: Any = None, **fields: Any) -> None:
        """Journal a completed operation (when journaling); a move from outside the root is the
        creation and writing of its destination, a move out of it an unlink of its source."""
        if self.journal is None:
            return
        rel, rel_dst = self.entry(path), self.entry(dst) if dst is not None else ""
        if op == "rename" and rel == OUTSIDE_ROOT:
            self.journal.add("create", rel_dst, kind="file")
            self.journal.add("write", rel_dst, trunc=True)
        elif op == "rename" and rel_dst == OUTSIDE_ROOT:
            self.journal.add("unlink", rel)
        else:
            self.journal.add(op, rel, dst=rel_dst, **fields)

    def under_root(self, path: Any) -> bool:
        if isinstance(path, int):
            try:
                path = os.readlink(f"/proc/self/fd/{path}")
            except OSError:
                return False
        try:
            real = os.path.realpath(os.fsdecode(path))
        except (TypeError, ValueError):
            return False
        return real == self.root or real.startswith(self.root + os.sep)

    def mutation(self, op: str, path: Any, dst: Any = None, changes: bool = True) -> None:
        """Number a mutation; fire the fault at its crash point, or at the first call after it
        that ``changes`` something. An ``oserror`` fault stays armed: every later call that
        changes something fails too; a ``hold`` fault waits at its gate once, then the call runs."""
        entry = Mutation(
            time.monotonic(), op, self.rel(path), self.rel(dst) if dst is not None else ""
        )
        self.log.append(entry)
        if self.fault is None or len(self.log) < self.fault.at or not changes:
            return
        fault = self.fault
        where = f"mutation {len(self.log)}" + (
            f" (point {fault.at} was a no-op)" if len(self.log) != fault.at else ""
        )
        if fault.kind == "hold":
            self.fault = None
            arrive_and_wait(fault.gate)
            return
        if fault.kind == "kill":
            self.on_kill(f"SIGKILL before {where}: {entry}")
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.EIO, f"ckptspec fault injection: EIO at {where} ({entry})")

    def entry(self, path: Any) -> str:
        """Like :meth:`rel`, but a link names itself, not what it points at."""
        if isinstance(path, int):
            return self.rel(path)
        try:
            text = os.path.abspath(os.fsdecode(path))
        except (TypeError, ValueError):
            return repr(path)
        parent = os.path.realpath(os.path.dirname(text))
        if parent != self.root and not parent.startswith(self.root + os.sep):
            return OUTSIDE_ROOT
        return os.path.relpath(os.path.join(parent, os.path.basename(text)), self.root)

    def rel(self, path: Any) -> str:
        """``path`` relative to the root, for reports."""
        if isinstance(path, int):
            try:
                path = os.readlink(f"/proc/self/fd/{path}")
            except OSError:
                return f"fd {path}"
        if not self.under_root(path):
            return OUTSIDE_ROOT
        try:
            return os.path.relpath(os.path.realpath(os.fsdecode(path)), self.root)
        except (TypeError, ValueError):
            return repr(path)


@contextlib.contextmanager
def interpose(
    root: str, fault: Fault | None, rank: int, on_kill: Callable[[str], None]
) -> Iterator[list[str]]:
    """Number every mutation under ``root`` while the block runs; yield the growing log.

    ``fault`` fires only on its own rank; ``on_kill(description)`` runs just before a ``kill``
    fault so the caller can record where the rank died. Restores every patched function on exit.
    """
    counter = _Counter(root, fault, rank, on_kill)
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, wrapper)

    real_open = io.open

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not (
            isinstance(mode, str)
            and any(c in mode for c in "wax+")
            and counter.under_root(_parent_or_self(file))
        ):
            return real_open(file, mode, *args, **kwargs)
        counter.mutation("open", file)
        new = not _exists(file)
        f = real_open(file, mode, *args, **kwargs)
        _record_write(counter, file, new, trunc=new or "w" in mode)
        return f

    real_os_open = os.open

    def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        full = _resolve(path, kwargs.get("dir_fd"))
        if not (flags & _WRITE_FLAGS and counter.under_root(_parent_or_self(full))):
            return real_os_open(path, flags, *args, **kwargs)
        counter.mutation("os.open", full)
        new = not _exists(full)
        fd = real_os_open(path, flags, *args, **kwargs)
        _record_write(counter, full, new, trunc=new or bool(flags & os.O_TRUNC))
        return fd

    def path_call(name: str) -> Callable[..., Any]:
        real = getattr(os, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if name == "symlink":  # symlink(target, link): the mutation is at `link`
                target, dst = (
                    (_resolve(args[1], kwargs.get("dir_fd")), args[0])
                    if len(args) > 1
                    else (None, None)
                )
            else:
                target = (
                    _resolve(args[0], kwargs.get("dir_fd", kwargs.get("src_dir_fd")))
                    if args
                    else None
                )
                dst = (
                    _resolve(args[1], kwargs.get("dst_dir_fd"))
                    if name in _TWO_PATH_CALLS and len(args) > 1
                    else None
                )
            # A move into the root from outside it (fsspec's transactions stage in $TMPDIR) is a
            # mutation under the root too.
            inside = target is not None and counter.under_root(_parent_or_self(target))
            moved_in = (
                name != "symlink" and dst is not None and counter.under_root(_parent_or_self(dst))
            )
            if not (inside or moved_in):
                return real(*args, **kwargs)
            counter.mutation(name, target, dst, _changes(name, target))
            result = real(*args, **kwargs)
            _record_path_call(counter, name, target, dst)
            return result

        return wrapper

    def fd_call(name: str) -> Callable[..., Any]:
        real = getattr(os, name)

        def wrapper(fd: Any, *args: Any) -> Any:
            fileno = fd if isinstance(fd, int) else fd.fileno()
            if not counter.under_root(fileno):
                return real(fd, *args)
            counter.mutation(name, fileno)
            started = time.monotonic()
            result = real(fd, *args)
            if counter.journal is not None:
                if name == "ftruncate":
                    counter.record("write", fileno, trunc=bool(args) and args[0] == 0)
                else:
                    counter.journal.sync(
                        counter.rel(fileno), os.readlink(f"/proc/self/fd/{fileno}"), started
                    )
            return result

        return wrapper

    def native_writer(op: str, real: Callable[..., Any], path_arg: int) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            path = args[path_arg] if len(args) > path_arg else None
            if not (
                isinstance(path, (str, os.PathLike)) and counter.under_root(_parent_or_self(path))
            ):
                return real(*args, **kwargs)
            counter.mutation(op, path)
            new = not _exists(path)
            result = real(*args, **kwargs)
            _record_write(counter, path, new, trunc=True)
            return result

        return wrapper

    serialization = sys.modules.get("torch.serialization")
    if serialization is not None:
        patch(
            serialization,
            "_open_zipfile_writer",
            native_writer("torch.save", serialization._open_zipfile_writer, 0),
        )
    safetensors = sys.modules.get("safetensors.torch")
    if safetensors is not None:
        patch(
            safetensors,
            "serialize_file",
            native_writer("safetensors", safetensors.serialize_file, 1),
        )
    patch(builtins, "open", open_)
    patch(io, "open", open_)
    patch(os, "open", os_open)
    for name in _PATH_CALLS:
        patch(os, name, path_call(name))
    for name in _FD_CALLS:
        patch(os, name, fd_call(name))
    try:
        yield counter.log
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)
        if counter.journal is not None:
            counter.journal.close()


def _exists(path: Any) -> bool:
    if isinstance(path, int):  # an open descriptor
        return True
    try:
        return os.path.lexists(os.fsdecode(path))
    except (TypeError, ValueError):
        return False


def _record_write(counter: _Counter, path: Any, new: bool, trunc: bool) -> None:
    """Journal an open for writing: the creation of ``path`` when ``new``, then its write."""
    if new:
        counter.record("create", path, kind="file")
    counter.record("write", path, trunc=trunc)


def _record_path_call(counter: _Counter, name: str, target: Any, dst: Any) -> None:
    """Journal a completed path call (``target`` is the link for a symlink)."""
    if name in ("rename", "replace"):
        counter.record("rename", target, dst)
    elif name in ("unlink", "remove"):
        counter.record("unlink", target)
    elif name == "rmdir":
        counter.record("rmdir", target)
    elif name == "mkdir":
        counter.record("create", target, kind="dir")
    elif name == "symlink":
        counter.record("create", target, kind="link")
    elif name == "link":
        _record_write(counter, dst, True, True)
    elif name == "truncate":
        counter.record("write", target, trunc=True)


def _changes(name: str, target: Any) -> bool:
    """Whether the call ``name`` on ``target`` would change the file system (see the module doc)."""
    if isinstance(target, int):
        return True
    try:
        exists = os.path.lexists(os.fsdecode(target))
    except (TypeError, ValueError):
        return True
    if name in ("mkdir", "symlink"):
        return not exists
    return exists or name == "truncate"


def _resolve(path: Any, dir_fd: int | None) -> Any:
    """``path`` made absolute when it is relative to the directory descriptor ``dir_fd``."""
    if dir_fd is None or isinstance(path, int):
        return path
    try:
        return os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), os.fsdecode(path))
    except (OSError, TypeError):
        return path


def _parent_or_self(path: Any) -> Any:
    """A path to test for confinement: the path itself, or its parent when it does not exist yet."""
    if isinstance(path, int):
        return path
    try:
        text = os.fsdecode(path)
    except TypeError:
        return path
    return text if os.path.lexists(text) else os.path.dirname(os.path.abspath(text))
