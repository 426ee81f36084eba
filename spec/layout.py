"""The directory layout of a run, declared as data (spec section *layout*).

    <output_dir>/<run_id>/                      run directory
      run.json                                  run index
      latest, best                              optional symbolic links to checkpoints
      step-000000100/                           committed checkpoint (manifest.json inside)
      .staging-step-000000200-<32 hex>/         in-flight save, never listed
      .rewound/<fork id>/step-000000300/        checkpoints moved aside by a rewind
"""

from __future__ import annotations

import re
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class Layout(BaseModel):
    """Names and patterns of everything a run directory may hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest_file: str = Field(description="The commit marker inside a checkpoint directory.")
    run_index_file: str = Field(description="The run index inside a run directory.")
    checkpoint_dir_pattern: str = Field(description="Regex of a committed checkpoint directory; group 1 is the step.")
    staging_dir_pattern: str = Field(description="Regex of an in-flight save; group 1 is the step, group 2 a random id.")
    rewound_dir: str = Field(description="Directory holding checkpoints moved aside by rewinds, one subdirectory per fork.")
    pointer_links: tuple[str, ...] = Field(description="Optional symbolic links in the run directory.")
    step_digits: int = Field(description="Minimum digits of the zero-padded step in directory names.")
    run_id_pattern: str = Field(description="Regex a run id (and run directory name) must match.")


LAYOUT = Layout(
    manifest_file="manifest.json",
    run_index_file="run.json",
    checkpoint_dir_pattern=r"^step-([0-9]{9,})$",
    staging_dir_pattern=r"^\.staging-step-([0-9]{9,})-([0-9a-f]{32})$",
    rewound_dir=".rewound",
    pointer_links=("latest", "best"),
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


def parse_checkpoint_dir(name: str) -> Optional[int]:
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
