"""The requirement-by-requirement report: per-test records in, per-requirement outcomes out.

Outcomes (worst first): ``error`` (the harness broke; never a verdict on the trainer), ``fail``,
``xfail`` (failed, listed in the implementer's xfails file), ``blocked`` (not judged because
another requirement failed first), ``pass`` (at least one check of it ran, and every check
held), ``n/a`` (a *ckptspec writer* requirement, about ckptspec's format, of an adapter that
declares ``checkpoint_format = "native"``: it does not apply, and is neither a pass nor a
failure), ``skipped`` (the adapter lacks a capability), ``not-run`` (nothing checked it: the tests
that name it recorded no check, or none ran, e.g. deselected with ``-k``). Only ``pass`` counts
as conformance.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ckptspec.conformance_output import CONFORMANCE_REPORT_VERSION
from ckptspec.exit_codes import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from ckptspec.requirements import REQUIREMENTS

NOT_APPLICABLE = "n/a"
NOT_APPLICABLE_REASON = "n/a: native format"
"""The start of the skip reason of a test whose every requirement is a writer requirement that
does not apply to the adapter's native format; such a test is recorded with outcome ``n/a``."""

ORDER = ("error", "fail", "xfail", "blocked", "pass", NOT_APPLICABLE, "skipped", "not-run")


def worst(outcomes: Iterable[str]) -> str:
    """The worst outcome by :data:`ORDER` (``not-run`` for none)."""
    return min(outcomes, key=ORDER.index, default="not-run")


@dataclass
class RecordedTest:
    """One test as the report sees it."""

    nodeid: str
    outcome: str  # pytest's: passed / failed / skipped / error / xfailed / xpassed; or n/a
    duration_s: float
    requirements: dict[str, str]  # requirement ID -> outcome in this test
    message: str = ""
    replay: str | None = None
    messages: dict[str, str] = field(
        default_factory=dict
    )  # requirement ID -> its own first failure message


@dataclass
class RequirementRow:
    """One requirement's outcome over every test that names it."""

    id: str
    level: str
    title: str
    verified_by: list[str]
    outcome: str
    tests: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    replay: list[str] = field(default_factory=list)


def requirement_outcomes(
    pytest_outcome: str,
    requirements: Iterable[str],
    verdict: Mapping[str, str],
    harness_error: bool,
) -> dict[str, str]:
    """Per-requirement outcomes of one test from pytest's outcome and the test's verdict.

    A requirement the verdict holds no outcome for is ``not-run``, never ``pass``. When the
    harness broke, a failure the test had already recorded (e.g. in an earlier Hypothesis
    example) stays ``fail``; everything else is ``error``."""
    reqs = list(requirements)
    if pytest_outcome == NOT_APPLICABLE:
        return {r: NOT_APPLICABLE for r in reqs}
    if pytest_outcome == "error":
        return {r: "error" for r in reqs}
    if harness_error:
        return {r: "fail" if verdict.get(r) == "fail" else "error" for r in reqs}
    if pytest_outcome == "skipped":
        return {r: "skipped" for r in reqs}
    if pytest_outcome == "xfailed":
        return {r: "xfail" if verdict.get(r, "fail") == "fail" else verdict[r] for r in reqs}
    if pytest_outcome == "failed" and not any(v == "fail" for v in verdict.values()):
        # e.g. the trainer crashed (reproduced by a rerun) before any check: every requirement
        # under test fails, except those that do not apply to the adapter's format
        return {r: NOT_APPLICABLE if verdict.get(r) == NOT_APPLICABLE else "fail" for r in reqs}
    return {r: verdict.get(r, "not-run") for r in reqs}


def build_rows(
    records: Iterable[RecordedTest], messages_per_requirement: int = 3
) -> list[RequirementRow]:
    """One row per requirement of the spec, in registry order. A row's messages are each failing
    test's message for that requirement (another requirement of the same test that failed first
    never stands in for it); the test's message when it recorded none of its own."""
    records = list(records)
    rows = []
    for req in REQUIREMENTS:
        named = [t for t in records if req.id in t.requirements]
        outcome = worst(t.requirements[req.id] for t in named)
        bad = [t for t in named if t.requirements[req.id] in ("fail", "error", "xfail")]
        rows.append(
            RequirementRow(
                id=req.id,
                level=req.level.value,
                title=req.title,
                verified_by=list(req.verified_by),
                outcome=outcome,
                tests=[t.nodeid for t in named],
                messages=[f"{t.nodeid}: {t.messages.get(req.id, t.message)}" for t in bad][
                    :messages_per_requirement
                ],
                replay=[t.replay for t in bad if t.replay],
            )
        )
    return rows


def exit_status(rows: Iterable[RequirementRow]) -> int:
    """1 if a MUST requirement failed; else 2 if the harness broke anywhere or a MUST
    requirement named by tests that ran was checked by none of them; else 0."""
    rows = list(rows)
    if any(r.level == "MUST" and r.outcome == "fail" for r in rows):
        return EXIT_FAIL
    if any(
        r.outcome == "error" or (r.level == "MUST" and r.tests and r.outcome == "not-run")
        for r in rows
    ):
        return EXIT_ERROR
    return EXIT_OK


def summary_table(rows: Iterable[RequirementRow]) -> list[str]:
    """The terminal summary: one line per requirement, then the counts."""
    rows = list(rows)
    width = max(len(r.id) for r in rows)
    lines = [f"{r.id:<{width}}  {r.level:<6}  {r.outcome.upper():<14}  {r.title}" for r in rows]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    lines.append(
        ", ".join(f"{n} {o}" for o, n in sorted(counts.items(), key=lambda kv: ORDER.index(kv[0])))
    )
    return lines


def write_json(
    path: str | Path,
    header: Mapping[str, Any],
    rows: Iterable[RequirementRow],
    records: Iterable[RecordedTest],
    unknown_xfails: Iterable[str],
) -> None:
    """Write the JSON report (``conformance-report.schema.json``): header, the rows given, every test's record."""
    rows = list(rows)
    document = {
        "output": "ckptspec-conformance-report",
        "output_version": CONFORMANCE_REPORT_VERSION,
        **header,
        "exit_status": exit_status(rows),
        "requirements": [asdict(r) for r in rows],
        "tests": [asdict(t) for t in records],
        "unknown_xfails": sorted(unknown_xfails),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2) + "\n")


def read_xfails(path: str | Path) -> list[str]:
    """Test ids from an xfails file: one per line, ``#`` starts a comment, blank lines ignored."""
    ids = []
    for line in Path(path).read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            ids.append(text)
    return ids


def xfail_matches(xfail_id: str, nodeid: str) -> bool:
    """Whether an xfails-file id names the test ``nodeid`` (full node id, or its last part)."""
    base = nodeid.split("[", 1)[0]
    return xfail_id in (nodeid, base) or base.endswith(f"::{xfail_id}")
