"""pytest plugin of the conformance suite (registered through the ``pytest11`` entry point).

Loaded in every pytest run of an environment where ckptspec is installed, so it is inert unless
tests of :mod:`ckptspec.conformance.tests` are collected: importing it imports neither torch nor
Hypothesis, its fixtures are only built when a suite test asks for them, and the header and the
report appear only when suite tests ran.

Options: ``--ckptspec-adapter MODULE:OBJECT`` (env ``CKPTSPEC_ADAPTER``; default the reference
adapter), ``--ckptspec-profile quick|full``, ``--ckptspec-max-examples N``,
``--ckptspec-report PATH`` (JSON), ``--ckptspec-xfails PATH``, ``--ckptspec-derandomize``
(implied when ``CI`` is set), ``--ckptspec-replay JSON``.

Markers: ``requirement(ID, ...)``: the requirements a test checks; ``needs(CAPABILITY, ...)``:
skip unless the adapter declares every capability.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import time
from pathlib import Path
from typing import Any, Optional

import pytest

SUITE_PACKAGE = "ckptspec.conformance.tests"
_REQS_KEY = "ckptspec.requirements"
_VERDICT_KEY = "ckptspec.verdict"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ckptspec", "ckptspec conformance suite")
    group.addoption("--ckptspec-adapter", default=None, metavar="MODULE:OBJECT",
                    help="adapter under test (env CKPTSPEC_ADAPTER; default: the reference adapter)")
    group.addoption("--ckptspec-profile", default="quick", choices=("quick", "full"),
                    help="quick (every CI run) or full (releases)")
    group.addoption("--ckptspec-max-examples", type=int, default=None, metavar="N",
                    help="Hypothesis examples per scenario test (default: from the profile)")
    group.addoption("--ckptspec-report", default=None, metavar="PATH", help="write the JSON report here")
    group.addoption("--ckptspec-xfails", default=None, metavar="PATH",
                    help="file of test ids expected to fail (one per line, # comments)")
    group.addoption("--ckptspec-derandomize", action="store_true", default=False,
                    help="fixed Hypothesis examples (implied when the CI env var is set)")
    group.addoption("--ckptspec-replay", default=None, metavar="JSON",
                    help='rerun one failing example: {"test": NAME, "scenario": {...}}')


def pytest_configure(config: pytest.Config) -> None:
    from ckptspec.conformance import options

    config.addinivalue_line("markers", "requirement(*ids): spec requirement IDs the test checks")
    config.addinivalue_line("markers", "needs(*capabilities): skip unless the adapter declares them")
    try:
        resolved = options.resolve(
            config.getoption("--ckptspec-adapter"),
            config.getoption("--ckptspec-profile"),
            config.getoption("--ckptspec-max-examples"),
            config.getoption("--ckptspec-derandomize"),
            config.getoption("--ckptspec-replay"),
            config.getoption("--ckptspec-report"),
            config.getoption("--ckptspec-xfails"),
        )
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    options.configure(resolved)
    config.stash[_state_key] = _State()


class _State:
    """Per-session bookkeeping of the plugin."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.started = time.time()


_state_key = pytest.StashKey[_State]()


def _suite_dir() -> Path:
    """The directory of the suite's test modules (found without importing them)."""
    global _SUITE_DIR
    if _SUITE_DIR is None:
        spec = importlib.util.find_spec(SUITE_PACKAGE)
        assert spec is not None and spec.origin is not None
        _SUITE_DIR = Path(spec.origin).resolve().parent
    return _SUITE_DIR


_SUITE_DIR: Optional[Path] = None


def _is_suite(item: pytest.Item) -> bool:
    """Whether ``item`` is a test of the suite (by file location: pytest may import the
    module under another name, depending on its import mode and rootdir)."""
    return Path(str(item.path)).resolve().parent == _suite_dir()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from ckptspec.conformance import options
    from ckptspec.conformance.report import read_xfails, xfail_matches

    opts = options.current()
    suite = [i for i in items if _is_suite(i)]
    if not suite:
        return
    _harness(config)  # a bad --ckptspec-adapter stops the run here, as a usage error
    xfail_ids = read_xfails(opts.xfails) if opts.xfails else []
    deselected = []
    for item in suite:
        reqs = [str(a) for m in item.iter_markers("requirement") for a in m.args]
        item.user_properties.append((_REQS_KEY, reqs))
        if opts.replay is not None and item.name.split("[", 1)[0] != opts.replay.get("test"):
            deselected.append(item)
        if any(xfail_matches(x, item.nodeid) for x in xfail_ids):
            item.add_marker(pytest.mark.xfail(reason="listed in the ckptspec xfails file", strict=False))
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [i for i in items if i not in deselected]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _is_suite(item):
        return
    needed = [str(a) for m in item.iter_markers("needs") for a in m.args]
    if needed:
        missing = sorted(set(needed) - _harness(item.session.config).capabilities)
        if missing:
            pytest.skip(f"adapter lacks capability {', '.join(missing)}")
    if _harness(item.session.config).native:
        from ckptspec.conformance.report import NOT_APPLICABLE_REASON
        from ckptspec.requirements import ConformanceClass, get

        reqs = [str(a) for m in item.iter_markers("requirement") for a in m.args]
        if reqs and all(get(r).conformance_class is ConformanceClass.WRITER for r in reqs):
            pytest.skip(f"{NOT_APPLICABLE_REASON}: {', '.join(reqs)} are ckptspec-writer requirements")


_harness_key = pytest.StashKey[Any]()


def _harness(config: pytest.Config) -> Any:
    """The session's :class:`~ckptspec.conformance.harness.Harness` (built on first use)."""
    if _harness_key not in config.stash:
        import tempfile
        from pathlib import Path

        from ckptspec.conformance import options
        from ckptspec.conformance.harness import Harness

        opts = options.current()
        factory = config._tmp_path_factory  # type: ignore[attr-defined]  # set by pytest's tmp_path plugin
        base = factory.getbasetemp()
        shared = (base.parent if hasattr(config, "workerinput") else base) / "ckptspec-shared"
        shared.mkdir(exist_ok=True)
        private = Path(tempfile.mkdtemp(prefix="ckptspec-", dir=base))
        try:
            config.stash[_harness_key] = Harness(opts.adapter, opts.profile, shared, private)
        except ValueError as exc:  # a malformed or unimportable adapter: a usage error, not a traceback
            raise pytest.UsageError(f"--ckptspec-adapter: {exc}") from None
    return config.stash[_harness_key]


@pytest.fixture(scope="session")
def harness(request: pytest.FixtureRequest) -> Any:
    """The harness driving the adapter under test."""
    return _harness(request.config)


@pytest.fixture
def verdict(request: pytest.FixtureRequest) -> Any:
    """Per-requirement checks of this test (see :mod:`ckptspec.conformance.checks`)."""
    from ckptspec.conformance.checks import Verdict

    reqs = tuple(str(a) for m in request.node.iter_markers("requirement") for a in m.args)
    return Verdict(requirements=reqs, native=_harness(request.config).native)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    if not _is_suite(item):
        return
    report = outcome.get_result()
    verdict = getattr(item, "funcargs", {}).get("verdict")
    harness_error = False
    if call.excinfo is not None:
        from ckptspec.conformance.harness import HarnessError

        harness_error = _is_harness_error(call.excinfo.value, HarnessError)
    if call.when == "call" or call.excinfo is not None:
        report.user_properties.append(
            (_VERDICT_KEY, {
                "outcomes": verdict.final_outcomes() if verdict is not None else {},
                "replay": verdict.replay if verdict is not None else None,
                "first_failure": verdict.first_failure if verdict is not None else "",
                "harness_error": harness_error and call.when == "call",
            })
        )


def _is_harness_error(exc: BaseException, harness_error: type) -> bool:
    """Whether ``exc`` means the suite broke: a HarnessError, or anything but a failed check
    (an AssertionError, possibly inside an exception group such as Hypothesis' FlakyFailure)."""
    group = getattr(exc, "exceptions", None)
    if isinstance(group, tuple) and group:
        return any(_is_harness_error(e, harness_error) for e in group)
    if isinstance(exc, harness_error):
        return True
    return not isinstance(exc, (AssertionError, pytest.skip.Exception, pytest.fail.Exception))


@pytest.hookimpl(hookwrapper=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    """Under ``ckptspec conformance``'s progress lines, no progress dots: they would share the line."""
    outcome = yield
    from ckptspec.conformance.progress import PROGRESS_ENV

    category, letter, word = outcome.get_result()
    if letter and os.environ.get(PROGRESS_ENV):
        outcome.force_result((category, "", word))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    props = dict(report.user_properties)
    if _REQS_KEY not in props:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        state = _session_state
        if state is None:
            return
        from ckptspec.conformance.report import RecordedTest, requirement_outcomes

        info = props.get(_VERDICT_KEY, {"outcomes": {}, "replay": None, "harness_error": False})
        pytest_outcome = _pytest_outcome(report)
        message = ""
        if report.failed or pytest_outcome == "xfailed":
            # The first failing example's message: Hypothesis re-executes a failing example, and a
            # re-execution that broke the harness must not hide the failure it reproduces.
            first, last = info.get("first_failure", ""), _first_line(report)
            message = f"{first}\n(the last execution ended with: {last[:500]})" if first and info["harness_error"] else first or last
        state.records.append(
            RecordedTest(
                nodeid=report.nodeid,
                outcome=pytest_outcome,
                duration_s=round(report.duration, 3),
                requirements=requirement_outcomes(pytest_outcome, props[_REQS_KEY], info["outcomes"], info["harness_error"]),
                message=message,
                replay=info["replay"],
            )
        )


def _pytest_outcome(report: pytest.TestReport) -> str:
    from ckptspec.conformance.report import NOT_APPLICABLE, NOT_APPLICABLE_REASON

    if report.skipped and isinstance(report.longrepr, tuple) and NOT_APPLICABLE_REASON in str(report.longrepr[2]):
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


_session_state: Optional[_State] = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    global _session_state
    _session_state = session.config.stash[_state_key]


def pytest_report_header(config: pytest.Config) -> Optional[list[str]]:
    """The suite's header, when the command line names the suite (works under xdist too)."""
    if not any(_names_suite(str(arg)) for arg in config.args):
        return None
    return header_lines(config)


def _names_suite(arg: str) -> bool:
    path = arg.split("::", 1)[0]
    if path == SUITE_PACKAGE or path.startswith(SUITE_PACKAGE + "."):
        return True
    try:
        resolved = Path(path).resolve()
    except OSError:
        return False
    return resolved == _suite_dir() or _suite_dir() in resolved.parents


def header_lines(config: pytest.Config) -> list[str]:
    """The report header: adapter, capabilities, profile, spec, suite, torch and Python versions."""
    from ckptspec import SPEC_VERSION, __version__
    from ckptspec.conformance import options

    opts = options.current()
    h = _harness(config)
    import torch

    return [
        f"ckptspec conformance {__version__} (spec {SPEC_VERSION}); torch {torch.__version__}; "
        f"python {platform.python_version()}",
        f"adapter: {opts.adapter}; capabilities: {', '.join(sorted(h.capabilities)) or '(none)'}; "
        f"profile: {opts.profile.name}; derandomize: {opts.derandomize}",
    ]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[_state_key]
    if hasattr(config, "workerinput") or not state.records:
        return
    from ckptspec.conformance import options
    from ckptspec.conformance.report import build_rows, read_xfails, summary_table, write_json, xfail_matches

    opts = options.current()
    rows = build_rows(state.records)
    terminalreporter.write_sep("=", "ckptspec conformance: requirement outcomes")
    for line in header_lines(config) + summary_table(rows):
        terminalreporter.write_line(line)
    unknown: list[str] = []
    if opts.xfails:
        unknown = [x for x in read_xfails(opts.xfails) if not any(xfail_matches(x, t.nodeid) for t in state.records)]
        for x in unknown:
            terminalreporter.write_line(f"WARNING: xfails file names unknown test id {x!r}", yellow=True)
    if opts.report:
        import torch

        from ckptspec import SPEC_VERSION, __version__

        write_json(
            opts.report,
            {
                "suite_version": __version__,
                "spec_version": SPEC_VERSION,
                "adapter": opts.adapter,
                "framework": str(getattr(_harness(config).adapter_class, "framework", "")),
                "checkpoint_format": "native" if _harness(config).native else "ckptspec",
                "capabilities": sorted(_harness(config).capabilities),
                "profile": opts.profile.name,
                "torch_version": torch.__version__,
                "python_version": platform.python_version(),
                "duration_s": round(time.time() - state.started, 1),
            },
            rows,
            state.records,
            unknown,
        )
        terminalreporter.write_line(f"ckptspec report written to {opts.report}")
