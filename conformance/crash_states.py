"""Power-loss crash states: what the disk may hold after a power loss, built from a journal.

A SIGKILL leaves the page cache: every write a process made is still there. A power loss keeps
only what was made durable. The model (that of ALICE and CrashMonkey, on a POSIX file system
that promises no more than it must):

- everything on disk before the journaled operations began is durable;
- a file's data written since it was opened for writing is durable once an fsync of it follows
  (and the file was not written after); until then it may be lost: the file is **cut** to its
  content at its last fsync, or to empty if it was created or truncated after that fsync (or
  never fsynced), or it may be **torn**: the first half of the new content over the old;
- a directory entry changed by a create (file, directory, link), a rename, an unlink or an
  rmdir is durable once an fsync of its parent directory follows (both parents for a rename);
  until then the operation may be **undone**, and operations that depend on it then fail too (a
  file created in a directory whose creation was undone is gone with it).

:class:`CrashModel` reads the journal that :mod:`ckptspec.conformance.faults` writes (every rank's
operations, with the content of each file at each fsync), the directory as it was before the
journaled operations and as they left it, and lists the non-durable effects as
:class:`Choice` values. :meth:`CrashModel.build` writes the state in which a chosen set of them
is lost, into a fresh directory; :meth:`CrashModel.worst` chooses all of them. The construction
is exact and deterministic: the state is the directory before, with the journal replayed
without the undone operations, and file contents taken from the kill state, the fsync copies or
the directory before.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ckptspec.conformance.faults import BLOBS, JournalEntry

ROOT = "."
_ENTRY_OPS = ("create", "rename", "unlink", "rmdir")


@dataclass(frozen=True)
class Choice:
    """One non-durable effect lost to the power loss: ``undo`` the directory-entry operation
    ``index`` of the journal, ``cut`` the unsynced data of the file at ``path`` (as the kill left
    it) to its last fsync or to empty, or ``tear`` it (new first half over the old)."""

    kind: Literal["undo", "cut", "tear"]
    path: str
    index: int = -1

    def __str__(self) -> str:
        return f"{self.kind} {self.path}" + (
            f" (journal entry {self.index})" if self.kind == "undo" else ""
        )


@dataclass
class _Node:
    kind: str  # "file", "dir", "link"
    origin: str | None = None  # its path in the directory before, if it existed then
    writes: list[tuple[int, bool]] = field(default_factory=list)  # (entry index, truncated)
    syncs: list[tuple[int, str]] = field(default_factory=list)  # (entry index, sha256)


def _parent(path: str) -> str:
    return os.path.dirname(path) or ROOT


def _listing(root: Path) -> dict[str, str]:
    """``{relative path: kind}`` of everything under ``root`` (``root`` itself is ``.``)."""
    out = {ROOT: "dir"}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            out[rel] = "link" if full.is_symlink() else "dir" if full.is_dir() else "file"
    return out


def _move(names: dict[str, int], src: str, dst: str) -> None:
    moved = {k: v for k, v in names.items() if k == src or k.startswith(src + "/")}
    _remove(names, dst)
    for k, v in moved.items():
        del names[k]
        names[dst + k[len(src) :]] = v


def _remove(names: dict[str, int], path: str) -> None:
    for k in [k for k in names if k == path or k.startswith(path + "/")]:
        del names[k]


class CrashModel:
    """The power-loss states of one crash: ``before`` (the directory as it was before the
    journaled operations), ``after`` (as the crash left it), ``journal`` (its directory, for the
    fsync copies) and its ``entries`` (:func:`~ckptspec.conformance.faults.read_journal`)."""

    def __init__(
        self, before: Path, after: Path, journal: Path, entries: Sequence[JournalEntry]
    ) -> None:
        self.before, self.after, self.blobs = before, after, journal / BLOBS
        self.entries = list(entries)
        self.end: int | None = None  # set by at(): the model of an earlier point of the journal
        self.nodes: list[_Node] = []
        self.initial: dict[str, int] = {}
        for path, kind in sorted(_listing(before).items()):
            self.initial[path] = self._new(kind, origin=path)
        self.parents: dict[int, list[int]] = {}  # entry index -> parent directory nodes
        self.created: dict[int, int] = {}  # create entry index -> node
        self.final = self._simulate()
        self.kill_state = _listing(after)
        # made outside the journal (before the journaled calls began): kept as the kill left them
        self.outside = {
            path: self._new(kind)
            for path, kind in sorted(self.kill_state.items())
            if path not in self.final
        }

    def at(self, end: int) -> CrashModel:
        """The crash just before journal entry ``end`` (no process was killed there): a model
        of the entries before it. Only its :meth:`worst` state can be built, and built exactly:
        that state keeps only what was durable at ``end`` (the directory before, the entry
        operations whose directory was fsynced before ``end``, the fsync copies), while the
        content of data not yet durable then is not known."""
        model = CrashModel(self.before, self.after, self.blobs.parent, self.entries[:end])
        model.end = end
        # made outside the journal: what the whole journal did not make, not what it made later
        model.outside = {p: n for p, n in model.outside.items() if p in self.outside}
        return model

    def _new(self, kind: str, origin: str | None = None) -> int:
        self.nodes.append(_Node(kind, origin))
        return len(self.nodes) - 1

    def _simulate(self) -> dict[str, int]:
        """Replay every entry on the names: where each node ends up after the crash."""
        names = dict(self.initial)
        dir_syncs: dict[int, list[int]] = {}
        for i, e in enumerate(self.entries):
            if e.op == "create":
                self.parents[i] = [names.get(_parent(e.path), -1)]
                names[e.path] = self.created[i] = self._new(e.kind)
            elif e.op == "rename":
                self.parents[i] = sorted(
                    {names.get(_parent(e.path), -1), names.get(_parent(e.dst), -1)}
                )
                if e.path in names:
                    _move(names, e.path, e.dst)
            elif e.op in ("unlink", "rmdir"):
                self.parents[i] = [names.get(_parent(e.path), -1)]
                _remove(names, e.path)
            elif e.op in ("write", "sync"):
                node = names.get(e.path)
                if node is None:  # made outside the journal: unknown before, so not durable
                    node = names[e.path] = self._new(e.kind if e.op == "sync" else "file")
                if e.op == "write":
                    self.nodes[node].writes.append((i, e.trunc))
                elif e.kind == "dir":
                    dir_syncs.setdefault(node, []).append(i)
                else:
                    self.nodes[node].syncs.append((i, e.sha256))
        self._durable = {
            i
            for i, parents in self.parents.items()
            if all(any(j > i for j in dir_syncs.get(p, ())) for p in parents)
        }
        return names

    # --- the choices -------------------------------------------------------------------------
    def durable(self, index: int) -> bool:
        """Whether the directory-entry operation at journal ``index`` survives any power loss."""
        return index in self._durable

    def _after_bytes(self, path: str) -> bytes:
        return (self.after / path).read_bytes()

    def _data_durable(self, node: int, path: str) -> bool:
        n = self.nodes[node]
        if not n.writes:
            return True
        last_write = n.writes[-1][0]
        if (
            not n.syncs
            or n.syncs[-1][0] < last_write
            or self.kill_state.get(path) != "file"
            or not (self.after / path).is_file()  # at() an earlier point: renamed or gone since
        ):
            return False
        return hashlib.sha256(self._after_bytes(path)).hexdigest() == n.syncs[-1][1]

    def candidates(self) -> list[Choice]:
        """Every non-durable effect, in journal order, then the unsynced files by path. An
        operation on an entry of a directory that no longer exists is left out (undoing it
        changes nothing visible)."""
        alive = set(self.final.values())
        out = [
            Choice("undo", e.dst or e.path, i)
            for i, e in enumerate(self.entries)
            if e.op in _ENTRY_OPS
            and not self.durable(i)
            and all(p in alive for p in self.parents[i])
        ]
        for path, node in sorted(self.final.items()):
            if self.nodes[node].kind == "file" and not self._data_durable(node, path):
                out += [Choice("cut", path), Choice("tear", path)]
        return out

    def worst(self) -> list[Choice]:
        """Every non-durable operation undone and every unsynced file cut."""
        return [c for c in self.candidates() if c.kind != "tear"]

    def pick(self, fractions: Iterable[float]) -> list[Choice]:
        """The candidates at ``fractions`` (each in ``[0, 1)``) of :meth:`candidates`, without repeats."""
        candidates = self.candidates()
        if not candidates:
            return []
        chosen = {candidates[min(len(candidates) - 1, int(f * len(candidates)))] for f in fractions}
        return sorted(chosen, key=candidates.index)

    # --- the state ---------------------------------------------------------------------------
    def _durable_content(self, node: int) -> bytes:
        """What a power loss keeps of a written file: its content at its last fsync, or empty
        when it was created or truncated after that (or never fsynced), or its old content."""
        n = self.nodes[node]
        truncated = [i for i, trunc in n.writes if trunc]
        if truncated and (not n.syncs or n.syncs[-1][0] < truncated[-1]):
            return b""
        if n.syncs:
            return (self.blobs / n.syncs[-1][1]).read_bytes()
        return (self.before / n.origin).read_bytes() if n.origin is not None else b""

    def _content(self, node: int, where: dict[int, str], effects: dict[int, str]) -> bytes:
        n = self.nodes[node]
        if not n.writes:
            if n.origin is None:
                return (
                    self._after_bytes(where[node])
                    if node in where and (self.after / where[node]).is_file()
                    else b""
                )
            return (self.before / n.origin).read_bytes()
        if (
            node not in where or self.kill_state.get(where[node]) != "file"
        ):  # unlinked, the unlink undone
            return self._durable_content(node)
        effect = effects.get(node)
        if effect == "cut":
            return self._durable_content(node)
        new = self._after_bytes(where[node])
        if effect == "tear":
            half, old = len(new) // 2, self._durable_content(node)
            return new[:half] + old[half:]
        return new

    def build(self, target: Path, choices: Iterable[Choice]) -> None:
        """Write into ``target`` (which must not exist) the state where ``choices`` are lost."""
        choices = list(choices)
        if self.end is not None and choices != self.worst():
            raise ValueError(
                f"only the worst state of the journal before entry {self.end} is known"
            )
        undone = {c.index for c in choices if c.kind == "undo"}
        effects = {self.final[c.path]: c.kind for c in choices if c.kind != "undo"}
        names = dict(self.initial)
        for i, e in enumerate(self.entries):
            if i in undone or e.op not in _ENTRY_OPS:
                continue
            parent = names.get(_parent(e.dst if e.op == "rename" else e.path))
            parent_is_dir = parent is not None and self.nodes[parent].kind == "dir"
            if e.op == "create" and parent_is_dir and e.path not in names:
                names[e.path] = self.created[i]
            elif (
                e.op == "rename"
                and parent_is_dir
                and e.path in names
                and not self._occupied(names, e.dst)
            ):
                _move(names, e.path, e.dst)
            elif e.op == "unlink" and e.path in names and self.nodes[names[e.path]].kind != "dir":
                del names[e.path]
            elif e.op == "rmdir" and e.path in names:
                _remove(names, e.path)
        for path, node in self.outside.items():
            if path not in names and _parent(path) in names:
                names[path] = node
        where = {node: path for path, node in [*self.final.items(), *self.outside.items()]}
        target.mkdir(parents=True)
        for path in sorted(names):
            if path == ROOT:
                continue
            node, out = names[path], target / path
            kind = self.nodes[node].kind
            if kind == "dir":
                out.mkdir()
            elif kind == "link":
                source = (
                    self.after / where[node]
                    if node in where
                    else self.before / (self.nodes[node].origin or path)
                )
                if source.is_symlink():
                    out.symlink_to(os.readlink(source))
            else:
                out.write_bytes(self._content(node, where, effects))

    def _occupied(self, names: dict[str, int], path: str) -> bool:
        """Whether ``path`` is a directory with entries (a rename onto it would fail)."""
        return path in names and any(k.startswith(path + "/") for k in names)
