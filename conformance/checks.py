"""Per-requirement verdicts inside one test: attribution of every failure to exactly one ID.

A test records each comparison with :meth:`Verdict.check` under the requirement the comparison
is about, marks a requirement :meth:`Verdict.blocked` when an earlier failure makes its checks
meaningless (e.g. a trajectory compared after the RNG was not restored), or
:meth:`Verdict.not_run` with the reason nothing could be checked (e.g. no crash point landed).

The one rule about conformance classes lives here, read from the registry
(:mod:`ckptspec.requirements`): for an adapter that declares ``checkpoint_format = "native"``,
every *ckptspec writer* requirement the test names is ``n/a`` from the start, with the reason,
and recording anything else for it raises ``ValueError`` (a suite bug: it can never pass). A
test asks :meth:`Verdict.applies` before reading ckptspec's format.

With :attr:`Verdict.stop_on` (the selected requirements under
``--ckptspec-stop-on-requirement-failure``), the first failed check of one of them raises
:class:`StoppedOnFailure` at once: the rest of the test could not change that requirement's
outcome, only cost time.

At the end, :meth:`Verdict.conclude` raises one ``AssertionError`` listing the failed
requirements, with the replay command, and raises :class:`UncheckedRequirement` (reported as a
harness *error*) if a requirement the test names got none of these: a requirement is ``pass``
only when a check of it ran and held. The plugin reads the verdicts to fill the report, so a
test that checks several requirements reports each one separately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ckptspec.conformance.phase import PhaseResult
from ckptspec.conformance.report import NOT_APPLICABLE, NOT_APPLICABLE_REASON, worst
from ckptspec.requirements import ConformanceClass, get


class UncheckedRequirement(Exception):
    """A conformance test concluded without recording any outcome for a requirement it names."""


class StoppedOnFailure(AssertionError):
    """A failed check of a requirement in :attr:`Verdict.stop_on` ended the test at once
    (``--ckptspec-stop-on-requirement-failure``): that failure is the verdict sought."""


@dataclass
class Verdict:
    """The checks of one test, by requirement ID."""

    requirements: tuple[str, ...]
    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, list[str]] = field(default_factory=dict)
    replay: str | None = None
    failed_before: set[str] = field(default_factory=set)
    first_failure: str = ""
    failures: dict[str, str] = field(
        default_factory=dict
    )  # requirement -> its first failure, across examples
    native: bool = (
        False  # the adapter declares checkpoint_format "native": writer requirements do not apply
    )
    stop_on: frozenset[str] = frozenset()  # a failed check of one of these ends the test at once

    def __post_init__(self) -> None:
        self._mark_not_applicable()

    def _mark_not_applicable(self) -> None:
        for requirement in self.requirements:
            if not self.applies(requirement):
                self.outcomes[requirement] = NOT_APPLICABLE
                self.messages[requirement] = [
                    f"{NOT_APPLICABLE_REASON}: {requirement} is a ckptspec-writer requirement"
                ]

    def applies(self, requirement: str) -> bool:
        """Whether ``requirement`` is judged for this adapter: False only for a *ckptspec writer*
        requirement (about ckptspec's layout, manifest, commit protocol or run index) of a
        native-format adapter, which is ``n/a``."""
        return not (self.native and get(requirement).conformance_class is ConformanceClass.WRITER)

    def applicable(self) -> list[str]:
        """The test's requirements that are judged for this adapter, in marker order."""
        return [r for r in self.requirements if self.applies(r)]

    def begin(self, replay: str | None) -> None:
        """Start a new example (Hypothesis runs several per test). Earlier passes are forgotten;
        earlier failures are kept in :attr:`failed_before`, so that a failure that does not
        reproduce (Hypothesis reports it as flaky) still counts against its requirement."""
        self.failed_before.update(r for r, o in self.outcomes.items() if o == "fail")
        self.outcomes.clear()
        self.messages.clear()
        self._mark_not_applicable()
        self.replay = replay

    def final_outcomes(self) -> dict[str, str]:
        """Outcomes for the report: the last example's, with failures of earlier examples."""
        return {**self.outcomes, **{r: "fail" for r in self.failed_before}}

    def _record(self, requirement: str, outcome: str, message: str = "") -> None:
        if requirement not in self.requirements:
            raise ValueError(
                f"check names {requirement}, which the test's requirement marker does not list"
            )
        if not self.applies(requirement):
            raise ValueError(
                f"{requirement} is a ckptspec-writer requirement, n/a for a native-format adapter: "
                f"it cannot be judged ({outcome}: {message})"
            )
        self.outcomes[requirement] = (
            worst([self.outcomes[requirement], outcome])
            if requirement in self.outcomes
            else outcome
        )
        if message:
            self.messages.setdefault(requirement, []).append(message)
        if (
            outcome == "fail" and requirement not in self.failures
        ):  # later re-executions must not hide it
            self.failures[requirement] = f"{requirement}: {message}" + (
                f"\nreplay: {self.replay}" if self.replay else ""
            )
            self.first_failure = self.first_failure or self.failures[requirement]
        if outcome == "fail" and requirement in self.stop_on:
            raise StoppedOnFailure(self.failures[requirement])

    def check(self, requirement: str, ok: bool, message: str) -> bool:
        """Record one comparison for ``requirement``; ``message`` says what failed. Returns ``ok``."""
        self._record(requirement, "pass" if ok else "fail", "" if ok else message)
        return ok

    def require(self, requirement: str, ok: bool, message: str) -> bool:
        """A precondition of ``requirement``'s checks (a set-up phase completed, a checkpoint was
        produced): a failure counts against ``requirement``, success is not a check of it.
        Returns ``ok``."""
        if not ok:
            self._record(requirement, "fail", message)
        return ok

    def blocked(self, requirement: str, reason: str) -> None:
        """``requirement`` could not be judged because of another requirement's failure."""
        self._record(requirement, "blocked", reason)

    def not_run(self, requirement: str, reason: str) -> None:
        """Nothing about ``requirement`` could be checked in this example (``reason`` says why).
        Another check of it in the same test, if any, decides its outcome."""
        self._record(requirement, "not-run", reason)

    def failed(self, requirement: str) -> bool:
        """Whether a check of ``requirement`` has failed so far."""
        return self.outcomes.get(requirement) == "fail"

    def phase_completed(self, requirement: str, result: PhaseResult, what: str) -> bool:
        """Require (see :meth:`require`) that every rank of ``result`` returned and no action failed."""
        ok = not result.missing and not result.errors()
        return self.require(requirement, ok, f"{what} did not complete:\n{result.describe()}")

    def conclude(self) -> None:
        """Raise ``AssertionError`` naming every failed requirement (with the replay command);
        otherwise raise :class:`UncheckedRequirement` if a named requirement has no outcome."""
        failed = [r for r in self.requirements if self.outcomes.get(r) == "fail"]
        if not failed:
            unchecked = [r for r in self.requirements if r not in self.outcomes]
            if unchecked:
                raise UncheckedRequirement(
                    f"the test concluded without recording a check of {', '.join(unchecked)}"
                )
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


def diff_digests(
    expected: Mapping[str, str], actual: Mapping[str, str], limit: int = 5
) -> list[str]:
    """Leaf paths whose digests differ, are missing or are extra; at most ``limit`` shown plus a count."""
    paths = sorted(set(expected) | set(actual))
    bad = [p for p in paths if expected.get(p) != actual.get(p)]
    shown = [
        f"{p} ({'missing' if p not in actual else 'unexpected' if p not in expected else 'differs'})"
        for p in bad[:limit]
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


def refusal_checks(
    v: Verdict, req: str, result: PhaseResult, refused: Mapping[int, str], before: int = 0
) -> None:
    """Each action of ``refused`` (action index -> what its input is) must fail with a refusal (a
    CheckpointError, or one of the adapter's ``refusal_errors``) on every rank, and the FullState
    actions at ``before`` and at the end must be equal (live state unchanged by all of them)."""
    for index, what in refused.items():
        for rank, res in sorted(result.results(index).items()):
            if res.ok:
                v.check(req, False, f"rank {rank}: resume of {what} succeeded; it must be refused")
                continue
            assert res.error is not None
            v.check(
                req,
                res.error.is_checkpoint_error,
                f"rank {rank}: {what} refused with {res.error.short()}, "
                f"not a CheckpointError or one of the adapter's refusal_errors",
            )
    for rank in result.ranks:
        first, last = (
            result.results(before).get(rank),
            result.results(len(result.spec.actions) - 1).get(rank),
        )
        same = (
            first is not None
            and last is not None
            and first.ok
            and last.ok
            and first.value == last.value
        )
        v.check(
            req,
            same,
            f"rank {rank}: live state changed by the resumes of {'; '.join(refused.values())}: "
            f"{diff_digests(first.value if first and first.ok else {}, last.value if last and last.ok else {})}",
        )
