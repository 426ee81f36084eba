"""Per-requirement verdicts inside one test: attribution of every failure to exactly one ID.

A test records each comparison with :meth:`Verdict.check` under the requirement the comparison
is about, or marks a requirement :meth:`Verdict.blocked` when an earlier failure makes its
checks meaningless (e.g. a trajectory compared after the RNG was not restored). At the end,
:meth:`Verdict.conclude` raises one ``AssertionError`` listing the failed requirements, with the
replay command. The plugin reads the verdicts to fill the report, so a test that checks several
requirements reports each one separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

from ckptspec.conformance.phase import PhaseResult
from ckptspec.conformance.report import worst

@dataclass
class Verdict:
    """The checks of one test, by requirement ID."""

    requirements: tuple[str, ...]
    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, list[str]] = field(default_factory=dict)
    replay: Optional[str] = None
    failed_before: set[str] = field(default_factory=set)

    def begin(self, replay: Optional[str]) -> None:
        """Start a new example (Hypothesis runs several per test). Earlier passes are forgotten;
        earlier failures are kept in :attr:`failed_before`, so that a failure that does not
        reproduce (Hypothesis reports it as flaky) still counts against its requirement."""
        self.failed_before.update(r for r, o in self.outcomes.items() if o == "fail")
        self.outcomes.clear()
        self.messages.clear()
        self.replay = replay

    def final_outcomes(self) -> dict[str, str]:
        """Outcomes for the report: the last example's, with failures of earlier examples."""
        return {**self.outcomes, **{r: "fail" for r in self.failed_before}}

    def _record(self, requirement: str, outcome: str, message: str = "") -> None:
        if requirement not in self.requirements:
            raise ValueError(f"check names {requirement}, which the test's requirement marker does not list")
        self.outcomes[requirement] = worst([self.outcomes.get(requirement, "not-run"), outcome])
        if message:
            self.messages.setdefault(requirement, []).append(message)

    def check(self, requirement: str, ok: bool, message: str) -> bool:
        """Record one comparison for ``requirement``; ``message`` says what failed. Returns ``ok``."""
        self._record(requirement, "pass" if ok else "fail", "" if ok else message)
        return ok

    def blocked(self, requirement: str, reason: str) -> None:
        """``requirement`` could not be judged because of another requirement's failure."""
        self._record(requirement, "blocked", reason)

    def failed(self, requirement: str) -> bool:
        """Whether a check of ``requirement`` has failed so far."""
        return self.outcomes.get(requirement) == "fail"

    def phase_completed(self, requirement: str, result: PhaseResult, what: str) -> bool:
        """Check that every rank of ``result`` returned and no action failed; attribute to ``requirement``."""
        ok = not result.missing and not result.errors()
        return self.check(requirement, ok, f"{what} did not complete:\n{result.describe()}")

    def conclude(self) -> None:
        """Raise ``AssertionError`` naming every failed requirement (with the replay command)."""
        failed = [r for r in self.requirements if self.outcomes.get(r) == "fail"]
        if not failed:
            return
        lines = []
        for req in failed:
            lines.append(f"{req} FAILED:")
            lines.extend(f"  - {m}" for m in self.messages.get(req, []))
        blocked = [r for r in self.requirements if self.outcomes.get(r) == "blocked"]
        if blocked:
            lines.append(f"not judged because of the failures above: {', '.join(blocked)}")
        if self.replay:
            lines.append(f"replay: {self.replay}")
        raise AssertionError("\n".join(lines))


def diff_digests(expected: Mapping[str, str], actual: Mapping[str, str], limit: int = 5) -> list[str]:
    """Leaf paths whose digests differ, are missing or are extra; at most ``limit`` shown plus a count."""
    paths = sorted(set(expected) | set(actual))
    bad = [p for p in paths if expected.get(p) != actual.get(p)]
    shown = [
        f"{p} ({'missing' if p not in actual else 'unexpected' if p not in expected else 'differs'})" for p in bad[:limit]
    ]
    if len(bad) > limit:
        shown.append(f"... {len(bad) - limit} more")
    return shown


def component(digests: Mapping[str, str], name: str) -> dict[str, str]:
    """The leaves of the top-level component ``name`` of a digested full state."""
    prefix = f"{name}/"
    return {p: d for p, d in digests.items() if p == name or p.startswith(prefix)}


def components(digests: Mapping[str, str]) -> set[str]:
    """The top-level component names of a digested full state."""
    return {p.split("/", 1)[0] for p in digests}


def refusal_checks(v: Verdict, req: str, result: PhaseResult, index: int, what: str, before: int = 0) -> None:
    """Action ``index`` must fail with a CheckpointError on every rank, and the FullState actions
    at ``before`` and at the end must be equal (live state unchanged). ``what`` names the input."""
    for rank, res in sorted(result.results(index).items()):
        if res.ok:
            v.check(req, False, f"rank {rank}: resume of {what} succeeded; it must be refused")
            continue
        assert res.error is not None
        v.check(req, res.error.is_checkpoint_error, f"rank {rank}: {what} refused with {res.error.short()}, not a CheckpointError")
    for rank in result.ranks:
        first, last = result.results(before).get(rank), result.results(len(result.spec.actions) - 1).get(rank)
        same = first is not None and last is not None and first.ok and last.ok and first.value == last.value
        v.check(req, same, f"rank {rank}: live state changed by refused resumes ({what}): "
                f"{diff_digests(first.value if first and first.ok else {}, last.value if last and last.ok else {})}")
