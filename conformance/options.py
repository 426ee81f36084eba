"""The options of one conformance run, as the plugin resolved them (no heavy imports).

The plugin calls :func:`configure` from ``pytest_configure``; test modules and the harness read
:func:`current`. Outside a pytest run (e.g. when a test module is imported by a tool),
:func:`current` returns the defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, Optional

from ckptspec.conformance.harness import PROFILES, Profile

DEFAULT_ADAPTER = "ckptspec.reference_impl.adapter:ReferenceAdapter"


@dataclass(frozen=True)
class RunOptions:
    """Everything the command line decided about the run."""

    adapter: str = DEFAULT_ADAPTER
    profile: Profile = PROFILES["quick"]
    max_examples: int = PROFILES["quick"].max_examples
    derandomize: bool = False
    replay: Optional[dict[str, Any]] = None
    report: Optional[str] = None
    xfails: Optional[str] = None
    select_requirements: tuple[str, ...] = ()
    stop_on_requirement_failure: bool = False


_current = RunOptions()


def resolve(
    adapter: Optional[str],
    profile: str,
    max_examples: Optional[int],
    derandomize: bool,
    replay: Optional[str],
    report: Optional[str],
    xfails: Optional[str],
    select_requirements: Sequence[str] = (),
    stop_on_requirement_failure: bool = False,
) -> RunOptions:
    """Options from command-line values; ``CKPTSPEC_ADAPTER`` is the adapter's env fallback.
    (``CI`` needs no handling here: Hypothesis loads its own ``ci`` profile, which derandomizes,
    and the suite's profiles inherit from whatever profile is loaded.)"""
    chosen = PROFILES[profile]
    parsed = json.loads(replay) if replay else None
    if parsed is not None and not (isinstance(parsed, dict) and "test" in parsed and "scenario" in parsed):
        raise ValueError('--ckptspec-replay takes JSON of the form {"test": NAME, "scenario": {...}}')
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
