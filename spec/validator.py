"""The validator's entry point: detect what a path is, and validate it.

A path may be a checkpoint directory, a run directory, a manifest file or a `run.json` file.
Validation only reads: it never writes, never follows a link out of a checkpoint directory,
never unpickles, and never imports torch.
"""

from __future__ import annotations

import os
import stat
from typing import Literal

from ckptspec.checkpoint_check import check_checkpoint
from ckptspec.documents import load_manifest, load_run_index
from ckptspec.findings import Finding
from ckptspec.layout import LAYOUT, is_staging_dir, parse_checkpoint_dir
from ckptspec.run_check import check_run

TargetKind = Literal["manifest", "run_index", "checkpoint", "run"]


class CannotCheck(Exception):
    """The path cannot be validated at all: it does not exist, cannot be read, or is not a file or directory."""


def detect(path: str) -> TargetKind:
    """What ``path`` is: a file named `run.json` is a run index and any other file a manifest; a
    directory holding `manifest.json` is a checkpoint; one holding `run.json`, `step-*`, staging
    or `.rewound` entries is a run; any other directory is taken as a checkpoint (and will be
    reported as lacking its manifest). Raises :class:`CannotCheck`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CannotCheck(f"{path}: no such file or directory") from None
    except OSError as exc:
        raise CannotCheck(f"{path}: {exc.strerror}") from None
    if stat.S_ISREG(st.st_mode):
        return "run_index" if os.path.basename(path) == LAYOUT.run_index_file else "manifest"
    if not stat.S_ISDIR(st.st_mode):
        raise CannotCheck(f"{path}: not a regular file or directory")
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise CannotCheck(f"{path}: cannot list directory: {exc.strerror}") from None
    if LAYOUT.manifest_file in names:
        return "checkpoint"
    run_markers = (LAYOUT.run_index_file, LAYOUT.rewound_dir)
    if any(n in run_markers or parse_checkpoint_dir(n) is not None or is_staging_dir(n) for n in names):
        return "run"
    return "checkpoint"


def validate_target(path: str, kind: TargetKind, *, deep: bool = False) -> list[Finding]:
    """The findings for ``path`` validated as ``kind``; raises :class:`CannotCheck` when it cannot be read."""
    try:
        if kind == "manifest":
            return load_manifest(path)[1]
        if kind == "run_index":
            return load_run_index(path)[1]
        if kind == "checkpoint":
            return check_checkpoint(path, deep=deep)[1]
        return check_run(path, deep=deep)
    except OSError as exc:
        raise CannotCheck(f"{path}: {exc.strerror or exc}") from None


def validate_path(path: str | os.PathLike[str], *, deep: bool = False) -> list[Finding]:
    """Every finding for the checkpoint, run directory, manifest or `run.json` at ``path``.

    An empty list (or only warnings) means conformant. ``deep`` adds SHA-256 checks of every
    listed file. Raises :class:`CannotCheck` when the path cannot be checked at all.
    """
    p = os.fspath(path)
    return validate_target(p, detect(p), deep=deep)
