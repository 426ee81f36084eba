"""pytest plugin: run only the conformance tests that carry given requirement IDs.

Load with ``-p requirement_select`` (this directory on ``PYTHONPATH``).

- ``--select-requirement ID`` (repeatable): a test is kept iff its ``requirement`` marker names
  at least one selected ID; every other collected test is reported as deselected. Without the
  option nothing is deselected.
- ``--stop-when-requirement-fails``: stop the session after the first test in which a selected
  requirement's outcome (as the suite's report computes it) is ``fail``. The report then shows
  the remaining requirements as ``not-run``: meant for mutants, whose verdict needs one failure.

(The suite's own plugin has neither option yet; see docs/catch-matrix.md.)
"""

from __future__ import annotations

from typing import Optional

import pytest

_REQS_KEY = "ckptspec.requirements"  # user properties written by ckptspec.conformance.plugin
_VERDICT_KEY = "ckptspec.verdict"
_session: Optional[pytest.Session] = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--select-requirement", action="append", default=[], metavar="ID",
                     help="keep only tests whose requirement marker names ID (repeatable)")
    parser.addoption("--stop-when-requirement-fails", action="store_true", default=False,
                     help="stop after the first test that fails a selected requirement")


def requirements_of(item: pytest.Item) -> set[str]:
    """The requirement IDs the test's ``requirement`` markers name."""
    return {str(arg) for mark in item.iter_markers("requirement") for arg in mark.args}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(config.getoption("--select-requirement"))
    if not wanted:
        return
    dropped = [item for item in items if not requirements_of(item) & wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if requirements_of(item) & wanted]


def pytest_sessionstart(session: pytest.Session) -> None:
    global _session
    _session = session


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    session = _session
    if session is None or report.when != "call" or not report.failed:
        return
    config = session.config
    wanted = set(config.getoption("--select-requirement"))
    if not config.getoption("--stop-when-requirement-fails") or not wanted:
        return
    from ckptspec.conformance.report import requirement_outcomes

    props = dict(report.user_properties)
    info = props.get(_VERDICT_KEY, {"outcomes": {}, "harness_error": False})
    outcomes = requirement_outcomes("failed", props.get(_REQS_KEY, []), info["outcomes"], info["harness_error"])
    failed = sorted(r for r, o in outcomes.items() if o == "fail" and r in wanted)
    if failed:
        session.shouldstop = f"selected requirement(s) {', '.join(failed)} failed"
