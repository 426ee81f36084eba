"""The run index `run.json`, spec version 1 (spec section *run*).

The set of committed checkpoint directories is the truth; the run index caches latest, best,
retention and rewind history and must agree with that set.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from ckptspec.types import (
    Extensions,
    Identifier,
    NonNegativeInt,
    PositiveInt,
    RelativePath,
    RunId,
    SpecVersion,
    StrictModel,
    Timestamp,
)


class _Model(StrictModel):
    model_config = ConfigDict(allow_inf_nan=False)


class BestRecord(_Model):
    """How the best checkpoint is chosen, and which one it is."""

    metric: str = Field(min_length=1, max_length=128, description="Eval metric name.")
    mode: Literal["max", "min"] = Field(description="Whether higher or lower scores are better.")
    min_delta: float = Field(
        ge=0,
        description="A new score replaces the best only if it improves on it by more than this.",
    )
    step: NonNegativeInt | None = Field(
        default=None, description="Step of the best checkpoint; null until one is recorded."
    )
    score: float | None = Field(
        default=None, description="The metric's value at `step`; null exactly when `step` is null."
    )


class RetentionPolicy(_Model):
    """Which committed checkpoints the writer keeps."""

    keep_last: PositiveInt | None = Field(
        default=None,
        description="Keep the N highest steps (plus the best); null keeps every checkpoint.",
    )


class Rewind(_Model):
    """A fork of the run's timeline: checkpoints moved aside because an older one was resumed."""

    fork_id: Identifier = Field(
        description="Unique id of the fork; also the directory name under `.rewound/`."
    )
    at: Timestamp = Field(description="When the fork happened.")
    resumed_from_step: NonNegativeInt = Field(
        description="The step the run resumed from (the last step of the kept timeline)."
    )
    discarded_steps: list[NonNegativeInt] = Field(
        min_length=1, description="Steps moved aside, ascending."
    )
    moved_to: RelativePath = Field(
        description="Where they were moved, relative to the run directory."
    )


class RunIndex(_Model):
    """`run.json`: the index of one run directory."""

    spec_version: SpecVersion
    run_id: RunId
    latest_step: NonNegativeInt | None = Field(
        description="Highest committed step; null when the run has none."
    )
    best: BestRecord | None = Field(
        default=None, description="Best-checkpoint tracking, if enabled."
    )
    retention: RetentionPolicy = Field(description="The retention policy in force.")
    rewinds: list[Rewind] = Field(default_factory=list, description="Timeline forks, oldest first.")
    updated_at: Timestamp = Field(description="When the index was last written.")
    extensions: Extensions
