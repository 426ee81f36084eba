"""pytest plugin of the conformance suite (registered through the ``pytest11`` entry point).

Loaded in every pytest run of an environment where ckptspec is installed, so it is inert unless
tests of :mod:`ckptspec.conformance.tests` are collected: importing it imports neither torch nor
Hypothesis (the harness, which launches torch, and the Hypothesis profile are imported where
first used), its fixtures are only built when a suite test asks for them, and the header and the
report appear only when suite tests ran.

One object owns the run: :func:`pytest_configure` resolves the options and registers a
:class:`ConformancePlugin`, which holds them, builds the :class:`~ckptspec.conformance.harness.Harness`
on first use, records every suite test and writes the report. Its hooks and fixtures are methods.

Options: ``--ckptspec-adapter MODULE:OBJECT`` (env ``CKPTSPEC_ADAPTER``; default the reference
adapter), ``--ckptspec-profile quick|full``, ``--ckptspec-max-examples N``,
``--ckptspec-report PATH`` (JSON), ``--ckptspec-xfails PATH``, ``--ckptspec-derandomize`` (also
Hypothesis' own ``ci`` profile when ``CI`` is set), ``--ckptspec-replay JSON``,
``--ckptspec-select-requirement ID`` (repeatable: keep only the tests that name ID) and
``--ckptspec-stop-on-requirement-failure`` (end the run at the first failed check of a selected
requirement, inside the test that made it; the rest of the report is then ``not-run``).

Markers: ``requirement(ID, ...)``: the requirements a test checks; ``needs(CAPABILITY, ...)``:
skip unless the adapter declares every capability.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from ckptspec import SPEC_VERSION, __version__
from ckptspec.conformance import options
from ckptspec.conformance.checks import Verdict
from ckptspec.conformance.progress import PROGRESS_ENV
from ckptspec.conformance.report import (
    NOT_APPLICABLE,
    NOT_APPLICABLE_REASON,
    RecordedTest,
    build_rows,
    read_xfails,
    requirement_outcomes,
    summary_table,
    write_json,
    xfail_matches,
)

SUITE_PACKAGE = "ckptspec.conformance.tests"
_REQS_KEY = "ckptspec.requirements"
_VERDICT_KEY = "ckptspec.verdict"
PLUGIN_NAME = "ckptspec-conformance"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ckptspec", "ckptspec conformance suite")
    group.addoption(
        "--ckptspec-adapter",
        default=None,
        metavar="MODULE:OBJECT",
        help="adapter under test (env CKPTSPEC_ADAPTER; default: the reference adapter)",
    )
    group.addoption(
        "--ckptspec-profile",
        default="quick",
        choices=("quick", "full"),
        help="quick (every CI run) or full (releases)",
    )
    group.addoption(
        "--ckptspec-max-examples",
        type=int,
        default=None,
        metavar="N",
        help="Hypothesis examples per scenario test (default: from the profile)",
    )
    group.addoption(
        "--ckptspec-report", default=None, metavar="PATH", help="write the JSON report here"
    )
    group.addoption(
        "--ckptspec-xfails",
        default=None,
        metavar="PATH",
        help="file of test ids expected to fail (one per line, # comments)",
    )
    group.addoption(
        "--ckptspec-derandomize",
        action="store_true",
        default=False,
        help="fixed Hypothesis examples (Hypothesis' ci profile does this when CI is set)",
    )
    group.addoption(
        "--ckptspec-replay",
        default=None,
        metavar="JSON",
        help='rerun one failing example: {"test": NAME, "scenario": {...}}',
    )
    group.addoption(
        "--ckptspec-select-requirement",
        action="append",
        default=[],
        metavar="ID",
        help="keep only the tests whose requirement marker names ID (repeatable)",
    )
    group.addoption(
        "--ckptspec-stop-on-requirement-failure",
        action="store_true",
        default=False,
        help="end the run at the first failed check of a selected requirement",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): spec requirement IDs the test checks")
    config.addinivalue_line(
        "markers", "needs(*capabilities): skip unless the adapter declares them"
    )
    try:
        resolved = options.resolve(
            config.getoption("--ckptspec-adapter"),
            config.getoption("--ckptspec-profile"),
            config.getoption("--ckptspec-max-examples"),
            config.getoption("--ckptspec-derandomize"),
            config.getoption("--ckptspec-replay"),
            config.getoption("--ckptspec-report"),
            config.getoption("--ckptspec-xfails"),
            config.getoption("--ckptspec-select-requirement"),
            config.getoption("--ckptspec-stop-on-requirement-failure"),
        )
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    options.configure(resolved)
    config.pluginmanager.register(ConformancePlugin(config, resolved), PLUGIN_NAME)


@cache
def suite_dir() -> Path:
    """The directory of the suite's test modules (found without importing them)."""
    spec = importlib.util.find_spec(SUITE_PACKAGE)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).resolve().parent


def is_suite(item: pytest.Item) -> bool:
    """Whether ``item`` is a test of the suite (by file location: pytest may import the
    module under another name, depending on its import mode and rootdir)."""
    return Path(str(item.path)).resolve().parent == suite_dir()


def requirements_of(item: pytest.Item) -> list[str]:
    """The requirement IDs the test's ``requirement`` markers name, in order."""
    return [str(a) for m in item.iter_markers("requirement") for a in m.args]


class ConformancePlugin:
    """The conformance run: its options, its harness (built on first use) and its records."""

    def __init__(self, config: pytest.Config, opts: Any) -> None:
        self.config = config
        self.options = opts  # a ckptspec.conformance.options.RunOptions
        self.records: list[
            Any
        ] = []  # ckptspec.conformance.report.RecordedTest, in the order tests ran
        self.started = time.time()
        self.session: pytest.Session | None = None
        self._harness: Any = None

    # ------------------------------------------------------------------ the harness
    @property
    def harness(self) -> Any:
        """The session's :class:`~ckptspec.conformance.harness.Harness` (built on first use)."""
        if self._harness is None:
            from ckptspec.conformance.harness import Harness

            base = self.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]  # pytest's tmp_path plugin
            shared = (
                base.parent if hasattr(self.config, "workerinput") else base
            ) / "ckptspec-shared"
            shared.mkdir(exist_ok=True)
            private = Path(tempfile.mkdtemp(prefix="ckptspec-", dir=base))
            try:
                self._harness = Harness(self.options.adapter, self.options.profile, shared, private)
            except (
                ValueError
            ) as exc:  # a malformed or unimportable adapter: a usage error, not a traceback
                raise pytest.UsageError(f"--ckptspec-adapter: {exc}") from None
        return self._harness

    @pytest.fixture(name="harness")
    def harness_fixture(self) -> Any:
        """The harness driving the adapter under test."""
        return self.harness

    @pytest.fixture
    def verdict(self, request: pytest.FixtureRequest) -> Any:
        """Per-requirement checks of this test (see :mod:`ckptspec.conformance.checks`). A test
        none of whose requirements applies to the adapter (the verdict says so) is not run:
        it is recorded ``n/a``."""
        opts = self.options
        verdict = Verdict(
            requirements=tuple(requirements_of(request.node)),
            native=self.harness.native,
            stop_on=frozenset(opts.select_requirements if opts.stop_on_requirement_failure else ()),
        )
        if verdict.requirements and not verdict.applicable():
            pytest.skip(
                f"{NOT_APPLICABLE_REASON}: {', '.join(verdict.requirements)} are ckptspec-writer requirements"
            )
        return verdict

    # ------------------------------------------------------------------ collection
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.session = session

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        suite = [i for i in items if is_suite(i)]
        if not suite:
            return
        _ = self.harness  # a bad --ckptspec-adapter stops the run here, as a usage error
        opts = self.options
        xfail_ids = read_xfails(opts.xfails) if opts.xfails else []
        selected = set(opts.select_requirements)
        deselected = []
        for item in suite:
            reqs = requirements_of(item)
            item.user_properties.append((_REQS_KEY, reqs))
            if opts.replay is not None and item.name.split("[", 1)[0] != opts.replay.get("test"):
                deselected.append(item)
            elif selected and not selected & set(reqs):
                deselected.append(item)
            if any(xfail_matches(x, item.nodeid) for x in xfail_ids):
                item.add_marker(
                    pytest.mark.xfail(reason="listed in the ckptspec xfails file", strict=False)
                )
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [i for i in items if i not in deselected]

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if not is_suite(item):
            return
        needed = [str(a) for m in item.iter_markers("needs") for a in m.args]
        missing = sorted(set(needed) - self.harness.capabilities)
        if missing:
            pytest.skip(f"adapter lacks capability {', '.join(missing)}")

    # ------------------------------------------------------------------ results
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        outcome = yield
        if not is_suite(item):
            return
        report = outcome.get_result()
        verdict = getattr(item, "funcargs", {}).get("verdict")
        harness_error = False
        if call.excinfo is not None:
            from ckptspec.conformance.harness import HarnessError

            harness_error = is_harness_error(call.excinfo.value, HarnessError)
        if call.when == "call" or call.excinfo is not None:
            report.user_properties.append(
                (
                    _VERDICT_KEY,
                    {
                        "outcomes": verdict.final_outcomes() if verdict is not None else {},
                        "replay": verdict.replay if verdict is not None else None,
                        "first_failure": verdict.first_failure if verdict is not None else "",
                        "failures": dict(verdict.failures) if verdict is not None else {},
                        "harness_error": harness_error and call.when == "call",
                    },
                )
            )

    @pytest.hookimpl(hookwrapper=True)
    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config) -> Any:
        """Under ``ckptspec conformance``'s progress lines, no progress dots: they would share the line."""
        outcome = yield
        category, letter, word = outcome.get_result()
        if letter and os.environ.get(PROGRESS_ENV):
            outcome.force_result((category, "", word))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if _REQS_KEY not in props or not (
            report.when == "call" or (report.when == "setup" and not report.passed)
        ):
            return
        info = props.get(_VERDICT_KEY, {"outcomes": {}, "replay": None, "harness_error": False})
        pytest_outcome = _pytest_outcome(report)
        message = ""
        if report.failed or pytest_outcome == "xfailed":
            # The first failing example's message: Hypothesis re-executes a failing example, and a
            # re-execution that broke the harness must not hide the failure it reproduces.
            first, last = info.get("first_failure", ""), _first_line(report)
            message = (
                f"{first}\n(the last execution ended with: {last[:500]})"
                if first and info["harness_error"]
                else first or last
            )
        recorded = RecordedTest(
            nodeid=report.nodeid,
            outcome=pytest_outcome,
            duration_s=round(report.duration, 3),
            requirements=requirement_outcomes(
                pytest_outcome, props[_REQS_KEY], info["outcomes"], info["harness_error"]
            ),
            message=message,
            replay=info["replay"],
            messages=info.get("failures", {}),
        )
        self.records.append(recorded)
        self._stop_if_selected_requirement_failed(recorded)

    def _stop_if_selected_requirement_failed(self, recorded: Any) -> None:
        """``--ckptspec-stop-on-requirement-failure``: one failure of a selected requirement is the verdict."""
        if not (
            self.options.stop_on_requirement_failure
            and self.options.select_requirements
            and self.session
        ):
            return
        failed = sorted(
            r
            for r, o in recorded.requirements.items()
            if o == "fail" and r in self.options.select_requirements
        )
        if failed:
            self.session.shouldstop = f"selected requirement(s) {', '.join(failed)} failed"

    # ------------------------------------------------------------------ header and report
    def pytest_report_header(self, config: pytest.Config) -> list[str] | None:
        """The suite's header, when the command line names the suite (works under xdist too)."""
        if not any(_names_suite(str(arg)) for arg in config.args):
            return None
        return self.header_lines()

    def header_lines(self) -> list[str]:
        """The report header: adapter, capabilities, profile, spec, suite, torch and Python versions."""
        import torch

        from ckptspec.conformance.strategies import hypothesis_profile

        opts, h = self.options, self.harness
        return [
            f"ckptspec conformance {__version__} (spec {SPEC_VERSION}); torch {torch.__version__}; "
            f"python {platform.python_version()}",
            f"adapter: {opts.adapter}; capabilities: {', '.join(sorted(h.capabilities)) or '(none)'}; "
            f"profile: {opts.profile.name}; derandomize: {hypothesis_profile(opts).derandomize}",
        ]

    def pytest_terminal_summary(
        self, terminalreporter: Any, exitstatus: int, config: pytest.Config
    ) -> None:
        if hasattr(config, "workerinput") or (
            not self.records and exitstatus != pytest.ExitCode.INTERRUPTED
        ):
            return
        opts = self.options
        rows = build_rows(self.records)
        if (
            opts.select_requirements
        ):  # the requirements asked for, and any other a selected test checked
            rows = [r for r in rows if r.tests or r.id in opts.select_requirements]
        terminalreporter.write_sep("=", "ckptspec conformance: requirement outcomes")
        for line in self.header_lines() + summary_table(rows):
            terminalreporter.write_line(line)
        unknown: list[str] = []
        if opts.xfails:
            unknown = [
                x
                for x in read_xfails(opts.xfails)
                if not any(xfail_matches(x, t.nodeid) for t in self.records)
            ]
            for x in unknown:
                terminalreporter.write_line(
                    f"WARNING: xfails file names unknown test id {x!r}", yellow=True
                )
        if opts.report:
            write_json(opts.report, self.report_header(), rows, self.records, unknown)
            terminalreporter.write_line(f"ckptspec report written to {opts.report}")

    def report_header(self) -> dict[str, Any]:
        """The JSON report's header: versions, adapter, format, capabilities, profile, duration."""
        import torch

        h = self.harness
        return {
            "suite_version": __version__,
            "spec_version": SPEC_VERSION,
            "adapter": self.options.adapter,
            "framework": h.declared.framework,
            "checkpoint_format": h.declared.checkpoint_format,
            "capabilities": sorted(h.capabilities),
            "profile": self.options.profile.name,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "duration_s": round(time.time() - self.started, 1),
        }


def is_harness_error(exc: BaseException, harness_error: type) -> bool:
    """Whether ``exc`` means the suite broke: a HarnessError, or anything but a failed check
    (an AssertionError, possibly inside an exception group such as Hypothesis' FlakyFailure)."""
    group = getattr(exc, "exceptions", None)
    if isinstance(group, tuple) and group:
        return any(is_harness_error(e, harness_error) for e in group)
    if isinstance(exc, harness_error):
        return True
    return not isinstance(exc, (AssertionError, pytest.skip.Exception, pytest.fail.Exception))


def _pytest_outcome(report: pytest.TestReport) -> str:
    if (
        report.skipped
        and isinstance(report.longrepr, tuple)
        and NOT_APPLICABLE_REASON in str(report.longrepr[2])
    ):
        return NOT_APPLICABLE
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.when == "setup" and report.failed:
        return "error"
    return report.outcome


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip()[:2000]


def _names_suite(arg: str) -> bool:
    path = arg.split("::", 1)[0]
    if path == SUITE_PACKAGE or path.startswith(SUITE_PACKAGE + "."):
        return True
    try:
        resolved = Path(path).resolve()
    except OSError:
        return False
    return resolved == suite_dir() or suite_dir() in resolved.parents
