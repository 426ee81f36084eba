"""The options of one conformance run, as the plugin resolved them (no heavy imports).

The plugin calls :func:`configure` from ``pytest_configure``; test modules and the harness read
:func:`current`. Outside a pytest run (e.g. when a test module is imported by a tool),
:func:`current` returns the defaults.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_ADAPTER = "ckptspec.reference_impl.adapter:ReferenceAdapter"


@dataclass(frozen=True)
class Profile:
    """How much a run explores. ``quick`` is for every CI run, ``full`` for releases."""

    name: str
    max_examples: int
    world_sizes: tuple[int, ...]  # sizes scenarios may save and load at
    crash_points: (
        int | None
    )  # drawn crash points besides the commit landmarks; None: every mutation
    phase_timeout_s: float
    eval_phase_timeout_s: (
        float  # phases that only build the adapter and evaluate: a hang shows sooner
    )


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        "quick",
        max_examples=1,
        world_sizes=(1, 2, 3),
        crash_points=1,
        phase_timeout_s=60.0,
        eval_phase_timeout_s=30.0,
    ),
    "full": Profile(
        "full",
        max_examples=3,
        world_sizes=(1, 2, 3, 4),
        crash_points=None,
        phase_timeout_s=120.0,
        eval_phase_timeout_s=60.0,
    ),
}


@dataclass(frozen=True)
class RunOptions:
    """Everything the command line decided about the run."""

    adapter: str = DEFAULT_ADAPTER
    profile: Profile = PROFILES["quick"]
    max_examples: int = PROFILES["quick"].max_examples
    derandomize: bool = False
    replay: dict[str, Any] | None = None
    report: str | None = None
    xfails: str | None = None
    select_requirements: tuple[str, ...] = ()
    stop_on_requirement_failure: bool = False


_current = RunOptions()


def resolve(
    adapter: str | None,
    profile: str,
    max_examples: int | None,
    derandomize: bool,
    replay: str | None,
    report: str | None,
    xfails: str | None,
    select_requirements: Sequence[str] = (),
    stop_on_requirement_failure: bool = False,
) -> RunOptions:
    """Options from command-line values; ``CKPTSPEC_ADAPTER`` is the adapter's env fallback.
    (``CI`` needs no handling here: Hypothesis loads its own ``ci`` profile, which derandomizes,
    and the suite's profiles inherit from whatever profile is loaded.)"""
    chosen = PROFILES[profile]
    parsed = json.loads(replay) if replay else None
    if parsed is not None and not (
        isinstance(parsed, dict) and "test" in parsed and "scenario" in parsed
    ):
        raise ValueError(
            '--ckptspec-replay takes JSON of the form {"test": NAME, "scenario": {...}}'
        )
    return RunOptions(
        adapter=adapter or os.environ.get("CKPTSPEC_ADAPTER") or DEFAULT_ADAPTER,
        profile=chosen,
        max_examples=max_examples if max_examples is not None else chosen.max_examples,
        derandomize=derandomize,
        replay=parsed,
        report=report,
        xfails=xfails,
        select_requirements=tuple(select_requirements),
        stop_on_requirement_failure=stop_on_requirement_failure,
    )


def configure(options: RunOptions) -> None:
    """Make ``options`` the current run's options."""
    global _current
    _current = options


def current() -> RunOptions:
    """The current run's options."""
    return _current
