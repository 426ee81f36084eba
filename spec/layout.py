"""The directory layout of a run, declared as data (spec section *layout*).

<output_dir>/<run_id>/                      run directory
  run.json                                  run index
  .writer.lock                              the single writer's claim (flock, RUN-8)
  latest, best                              optional symbolic links to checkpoints
  step-000000100/                           committed checkpoint (manifest.json inside)
  .staging-step-000000200-<32 hex>/         in-flight save, never listed
  .rewound/<fork id>/step-000000300/        checkpoints moved aside by a rewind
"""

from __future__ import annotations

import os
import re

from pydantic import BaseModel, ConfigDict, Field


class Layout(BaseModel):
    """Names and patterns of everything a run directory may hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest_file: str = Field(description="The commit marker inside a checkpoint directory.")
    run_index_file: str = Field(description="The run index inside a run directory.")
    lock_file: str = Field(
        description="The lock file a writer holds an exclusive `flock` on while it writes (RUN-8); empty."
    )
    checkpoint_dir_pattern: str = Field(
        description="Regex of a committed checkpoint directory; group 1 is the step."
    )
    staging_dir_pattern: str = Field(
        description="Regex of an in-flight save; group 1 is the step, group 2 a random id."
    )
    rewound_dir: str = Field(
        description="Directory holding checkpoints moved aside by rewinds, one subdirectory per fork."
    )
    latest_link: str = Field(
        description="Optional symbolic link in the run directory to the latest checkpoint."
    )
    best_link: str = Field(
        description="Optional symbolic link in the run directory to the best checkpoint."
    )
    step_digits: int = Field(
        description="Minimum digits of the zero-padded step in directory names."
    )
    run_id_pattern: str = Field(description="Regex a run id (and run directory name) must match.")


LAYOUT = Layout(
    manifest_file="manifest.json",
    run_index_file="run.json",
    lock_file=".writer.lock",
    checkpoint_dir_pattern=r"^step-([0-9]{9,})$",
    staging_dir_pattern=r"^\.staging-step-([0-9]{9,})-([0-9a-f]{32})$",
    rewound_dir=".rewound",
    latest_link="latest",
    best_link="best",
    step_digits=9,
    run_id_pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
)

_CHECKPOINT_RE = re.compile(LAYOUT.checkpoint_dir_pattern)
_STAGING_RE = re.compile(LAYOUT.staging_dir_pattern)


def checkpoint_dir_name(step: int) -> str:
    """The directory name of the committed checkpoint at ``step``."""
    if step < 0:
        raise ValueError(f"step must be non-negative, got {step}")
    return f"step-{step:0{LAYOUT.step_digits}d}"


def staging_dir_name(step: int, token: str) -> str:
    """The directory name of an in-flight save of ``step``; ``token`` is 32 lower-case hex digits."""
    name = f".staging-{checkpoint_dir_name(step)}-{token}"
    if not _STAGING_RE.match(name):
        raise ValueError(f"invalid staging token {token!r}: need 32 lower-case hex digits")
    return name


def parse_checkpoint_dir(name: str) -> int | None:
    """The step encoded in a checkpoint directory name, or None if ``name`` is not one.

    A name with more than the minimum digits is accepted only without superfluous leading zeros,
    so that one step has exactly one directory name.
    """
    match = _CHECKPOINT_RE.match(name)
    if not match:
        return None
    step = int(match.group(1))
    return step if name == checkpoint_dir_name(step) else None


def is_staging_dir(name: str) -> bool:
    """Whether ``name`` is the name of an in-flight save."""
    return _STAGING_RE.match(name) is not None


def step_directories(run_dir: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """``(step, path)`` of every entry of ``run_dir`` named like a checkpoint directory that is a
    directory itself (a symbolic link never is one), ascending by step; ``[]`` when ``run_dir``
    cannot be listed. Committed or not: see :func:`committed_steps`."""
    try:
        with os.scandir(run_dir) as it:
            found = [
                (step, entry.path)
                for entry in it
                if (step := parse_checkpoint_dir(entry.name)) is not None
                and entry.is_dir(follow_symlinks=False)
            ]
    except OSError:
        return []
    return sorted(found)


def committed_steps(run_dir: str | os.PathLike[str]) -> list[int]:
    """The steps of the committed checkpoints of ``run_dir``, ascending (LAYOUT-3, LAYOUT-8): the
    :func:`step_directories` that hold a ``manifest.json`` entry. Discovery is by name and commit
    marker only, never by modification time; whether the manifest is valid is the validator's
    and the loader's question, not discovery's."""
    return [
        step
        for step, path in step_directories(run_dir)
        if os.path.lexists(os.path.join(path, LAYOUT.manifest_file))
    ]
