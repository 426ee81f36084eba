"""The validator's entry point: detect what a path is, and validate it.

A path may be a checkpoint directory, a run directory, a manifest or a run index; what it is is
decided by its contents, as ``docs/spec/validating.md`` (*Target detection*) defines. A path that
is none of these, or cannot be read, cannot be checked: :class:`CannotCheck`, which the command
line reports with exit status 2 (``ckptspec.exit_codes.EXIT_ERROR``), never as a finding.
Validation only reads: it never writes, never follows a link out of a checkpoint directory,
never unpickles, and never imports torch.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any, Literal

from ckptspec.checkpoint_check import check_checkpoint
from ckptspec.documents import load_manifest, load_run_index
from ckptspec.findings import CannotCheck, Finding
from ckptspec.jsonload import read_document
from ckptspec.layout import LAYOUT, is_staging_dir, parse_checkpoint_dir
from ckptspec.manifest import Manifest
from ckptspec.run_check import check_run
from ckptspec.run_index import RunIndex

__all__ = ["CannotCheck", "TargetKind", "detect", "validate_path", "validate_target"]

TargetKind = Literal["manifest", "run_index", "checkpoint", "run"]

MAX_CHILDREN_EXAMINED = 256
"""How many entries of an unrecognised directory are looked into for a "did you mean" hint."""
MAX_ANCESTORS_EXAMINED = 16
"""How many parent directories are looked at for a checkpoint that encloses the path."""


def _run_markers(names: Iterable[str]) -> bool:
    """Whether a directory holding ``names`` is a run directory: entries only a run's writer
    creates (its index, its lock file, its rewound forks, a staging directory)."""
    markers = (LAYOUT.run_index_file, LAYOUT.lock_file, LAYOUT.rewound_dir)
    return any(n in markers or is_staging_dir(n) for n in names)


def _directory_kind(names: list[str]) -> TargetKind | None:
    if LAYOUT.manifest_file in names:
        return "checkpoint"
    return "run" if _run_markers(names) else None


def _enclosing_checkpoint(path: str) -> str | None:
    """The nearest directory above ``path`` that holds a `manifest.json` (None if there is none)."""
    current = os.path.dirname(os.path.abspath(path))
    for _ in range(MAX_ANCESTORS_EXAMINED):
        if os.path.isfile(os.path.join(current, LAYOUT.manifest_file)):
            return current if os.path.isabs(path) else os.path.relpath(current)
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
    return None


def _part_of_checkpoint(path: str) -> str:
    """A hint for a path inside a checkpoint directory ("" when it is not inside one)."""
    checkpoint = _enclosing_checkpoint(path)
    return (
        f"; it is part of the checkpoint {checkpoint}: did you mean {checkpoint}?"
        if checkpoint
        else ""
    )


def _listing(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        raise CannotCheck(f"{path}: cannot list directory: {exc.strerror}") from None


def _contained_targets(path: str, names: list[str]) -> tuple[list[str], list[str]]:
    """The checkpoint and the run directories among the first entries of ``path`` (sorted by name)."""
    checkpoints, runs = [], []
    for name in sorted(names)[:MAX_CHILDREN_EXAMINED]:
        child = os.path.join(path, name)
        if os.path.islink(child) or not os.path.isdir(child):
            continue
        try:
            kind = _directory_kind(os.listdir(child))
        except OSError:
            continue
        (checkpoints if kind == "checkpoint" else runs if kind == "run" else []).append(child)
    return checkpoints, runs


def _unrecognised_directory(path: str, names: list[str]) -> str | None:
    """Why the directory ``path`` cannot be checked, with what it contains (None when it holds no
    checkpoint or run, so that it is validated as a checkpoint lacking its manifest)."""
    enclosing = _part_of_checkpoint(path)
    if enclosing:
        return f"{path}: not a checkpoint or run directory{enclosing}"
    checkpoints, runs = _contained_targets(path, names)
    if runs:
        more = f" (and {len(runs) - 1} more run directories)" if len(runs) > 1 else ""
        return f"{path}: not a checkpoint or run directory, but it contains the run directory {os.path.basename(runs[0])}{more}: did you mean {runs[0]}?"
    if checkpoints:
        by_step = sorted((parse_checkpoint_dir(os.path.basename(c)) or -1, c) for c in checkpoints)
        best = by_step[-1][1]
        named = [c for c in checkpoints if parse_checkpoint_dir(os.path.basename(c)) is not None]
        why = (
            f" and no {LAYOUT.run_index_file}, so it is not a run directory (RUN-1)"
            if named
            else ""
        )
        return (
            f"{path}: not a checkpoint or run directory: it contains {len(checkpoints)} checkpoint "
            f"director{'y' if len(checkpoints) == 1 else 'ies'}{why}: did you mean {best}?"
        )
    return None


_MANIFEST_MEMBERS = frozenset(Manifest.model_fields) - {"extensions"}
_RUN_INDEX_MEMBERS = frozenset(RunIndex.model_fields) - {"extensions"}


def _document_kind(name: str, value: Any) -> TargetKind | None:
    """What a parsed document is, by its members (and, where they do not say, its file name)."""
    by_name: TargetKind | None = {
        LAYOUT.manifest_file: "manifest",
        LAYOUT.run_index_file: "run_index",
    }.get(name)  # type: ignore[assignment]
    if not isinstance(value, dict):
        return by_name  # not an object: only its name says what it was meant to be
    if "spec_version" in value:
        if "components" in value:
            return "manifest"
        if "latest_step" in value:
            return "run_index"
        return by_name
    members = (
        _MANIFEST_MEMBERS
        if by_name == "manifest"
        else _RUN_INDEX_MEMBERS
        if by_name == "run_index"
        else frozenset()
    )
    return by_name if members & value.keys() else None


def _file_kind(path: str) -> TargetKind:
    name = os.path.basename(path)
    try:
        value, problems = read_document(path, follow_links=True)
    except OSError as exc:
        raise CannotCheck(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if problems:
        if name == LAYOUT.manifest_file:
            return "manifest"
        if name == LAYOUT.run_index_file:
            return "run_index"
        raise CannotCheck(
            f"{path}: not a manifest or run index: {problems[0].message}{_part_of_checkpoint(path)}"
        )
    kind = _document_kind(name, value)
    if kind is None:
        raise CannotCheck(
            f"{path}: a JSON document, but not a manifest or run index (no `spec_version` with "
            f"`components` or `latest_step`){_part_of_checkpoint(path)}"
        )
    return kind


def detect(path: str) -> TargetKind:
    """What ``path`` is, by the rules of *Target detection* in ``docs/spec/validating.md``.

    Raises :class:`CannotCheck` when it cannot be read, or when it is none of the four kinds
    (the message then says what it contains and suggests the path meant)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CannotCheck(f"{path}: no such file or directory") from None
    except OSError as exc:
        raise CannotCheck(f"{path}: {exc.strerror}") from None
    if stat.S_ISREG(st.st_mode):
        return _file_kind(path)
    if not stat.S_ISDIR(st.st_mode):
        raise CannotCheck(f"{path}: not a regular file or directory")
    names = _listing(path)
    kind = _directory_kind(names)
    if kind is not None:
        return kind
    problem = _unrecognised_directory(path, names)
    if problem is not None:
        raise CannotCheck(problem)
    return "checkpoint"


def validate_target(path: str, kind: TargetKind, *, deep: bool = False) -> list[Finding]:
    """The findings for ``path`` validated as ``kind``; raises :class:`CannotCheck` when a file it
    must read (a manifest, the run index, a payload under ``deep``) cannot be read, naming that file."""
    try:
        if kind == "manifest":
            return load_manifest(path)[1]
        if kind == "run_index":
            return load_run_index(path)[1]
        if kind == "checkpoint":
            return check_checkpoint(path, deep=deep)[1]
        return check_run(path, deep=deep)
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else path
        raise CannotCheck(f"{where}: cannot be read: {exc.strerror or exc}") from None


def validate_path(path: str | os.PathLike[str], *, deep: bool = False) -> list[Finding]:
    """Every finding for the checkpoint, run directory, manifest or run index at ``path``.

    An empty list (or only warnings) means conformant. ``deep`` adds the digest check of every
    listed file. Raises :class:`CannotCheck` when the path cannot be checked at all.
    """
    p = os.fspath(path)
    return validate_target(p, detect(p), deep=deep)
