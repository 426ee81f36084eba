"""``ckptspec conformance``: run the conformance suite against an adapter.

Runs ``pytest --pyargs ckptspec.conformance.tests`` in-process with the suite's options, prints
pytest's output (with the requirement summary table) and, on stderr, a line per finished phase (a
live line of the running phases on a terminal; see :mod:`ckptspec.conformance.progress`). Exits 0
when every MUST requirement holds, 1 when one fails, 2 when the harness itself broke, pytest
could not run or a ``--requirement`` names no requirement the suite checks, 130 on Ctrl-C.

The first Ctrl-C stops the run after the test in progress (whose ranks the terminal's SIGINT
reaches too): pytest's session is told to stop, the partial report is written, and the exit
status is 130. (torch's elastic launcher, which starts every phase's ranks, installs its own
SIGINT handler unless its ``LaunchConfig.signals_to_handle`` leaves SIGINT out; where it is
installed, Ctrl-C during a phase becomes a failed launch, and pytest's INTERRUPTED status is
what remains to recognise it by.) Without ``--report`` the JSON report is kept in a temporary file whose path is
printed, so the path is real after the command ends. ``--html PATH`` also writes the report as
one self-contained HTML page (:mod:`ckptspec.html_report`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from ckptspec.exit_codes import EXIT_ERROR, EXIT_OK

EXIT_INTERRUPTED = 130


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the subcommand's options."""
    parser.add_argument(
        "--adapter",
        default=None,
        metavar="MODULE:OBJECT",
        help="adapter under test (default: $CKPTSPEC_ADAPTER or the reference adapter)",
    )
    parser.add_argument(
        "--profile",
        choices=("quick", "full"),
        default="quick",
        help="how much to explore (default quick)",
    )
    parser.add_argument(
        "--max-examples",
        type=int,
        default=None,
        metavar="N",
        help="Hypothesis examples per scenario test",
    )
    parser.add_argument(
        "--report", default=None, metavar="PATH", help="also write the JSON report here"
    )
    parser.add_argument(
        "--junitxml", default=None, metavar="PATH", help="also write a junit XML report here"
    )
    parser.add_argument(
        "--html", default=None, metavar="PATH", help="also write the report as an HTML page here"
    )
    parser.add_argument(
        "--xfails", default=None, metavar="PATH", help="file of test ids expected to fail"
    )
    parser.add_argument(
        "--derandomize",
        action="store_true",
        help="fixed examples (Hypothesis' ci profile does this when CI is set)",
    )
    parser.add_argument(
        "--requirement",
        action="append",
        default=[],
        metavar="ID",
        help="only the tests that check requirement ID (repeatable)",
    )
    parser.add_argument(
        "-n",
        "--numprocesses",
        default=None,
        metavar="N",
        help="pytest-xdist workers (e.g. 2 or auto)",
    )
    parser.add_argument(
        "-k",
        dest="keyword",
        default=None,
        metavar="EXPR",
        help="only tests matching this pytest -k expression",
    )
    parser.add_argument(
        "pytest_args", nargs="*", metavar="PYTEST_ARG", help="extra pytest arguments (after --)"
    )


def pytest_args(args: argparse.Namespace, report: str) -> list[str]:
    """The pytest command line for ``args``, writing the JSON report to ``report``."""
    argv = [
        "--pyargs",
        "ckptspec.conformance.tests",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
        "--ckptspec-profile",
        args.profile,
        "--ckptspec-report",
        report,
    ]
    if args.adapter:
        argv += ["--ckptspec-adapter", args.adapter]
    if args.max_examples is not None:
        argv += ["--ckptspec-max-examples", str(args.max_examples)]
    if args.xfails:
        argv += ["--ckptspec-xfails", args.xfails]
    if args.derandomize:
        argv.append("--ckptspec-derandomize")
    for requirement in args.requirement:
        argv += ["--ckptspec-select-requirement", requirement]
    if args.numprocesses:
        argv += ["-n", str(args.numprocesses)]
    if args.keyword:
        argv += ["-k", args.keyword]
    if args.junitxml:
        argv += ["--junitxml", args.junitxml]
    return argv + list(args.pytest_args)


def unknown_requirements(ids: list[str]) -> list[str]:
    """One line per ID of ``ids`` that names no requirement the suite checks (with the closest IDs)."""
    import difflib

    from ckptspec.requirements import REQUIREMENTS

    checked = [r.id for r in REQUIREMENTS if "conformance" in r.verified_by]
    known = {r.id for r in REQUIREMENTS}
    problems = []
    for rid in ids:
        if rid in checked:
            continue
        close = difflib.get_close_matches(rid, checked, n=3)
        why = (
            "is checked by the validator only, not by the suite"
            if rid in known
            else "is not a requirement of the spec"
        )
        problems.append(
            f"--requirement {rid}: {why}"
            + (f" (did you mean {' or '.join(close)}?)" if close else "")
        )
    return problems


class _StopOnInterrupt:
    """A pytest plugin object: the first SIGINT tells the session to stop after the running test
    (which the harness may report as broken) and is remembered for the exit status."""

    def __init__(self) -> None:
        self.session: Any = None
        self.interrupted = False

    def pytest_sessionstart(self, session: Any) -> None:
        self.session = session

    def handle(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        if self.session is not None:
            self.session.shouldstop = "interrupted by Ctrl-C"
        raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run the suite; the exit status follows the requirement outcomes in the JSON report."""
    problems = unknown_requirements(args.requirement)
    if problems:
        for line in problems:
            print(f"ckptspec conformance: {line}", file=sys.stderr)
        return EXIT_ERROR
    import pytest

    from ckptspec.conformance import progress

    if args.report:
        report = os.path.abspath(args.report)
    else:
        fd, report = tempfile.mkstemp(prefix="ckptspec-conformance-", suffix=".json")
        os.close(fd)
        os.unlink(report)  # the plugin writes it; an empty file must not pass for a report
    stopper = _StopOnInterrupt()
    previous = signal.signal(signal.SIGINT, stopper.handle)
    try:
        with tempfile.TemporaryDirectory(prefix="ckptspec-conformance-") as scratch:
            # Progress goes to a copy of stderr: pytest's capture redirects fd 2 itself while a test runs.
            with (
                os.fdopen(os.dup(2), "w") as stderr,
                progress.ProgressPrinter(Path(scratch), stderr) as printer,
            ):
                os.environ[progress.PROGRESS_ENV] = str(
                    printer.path
                )  # inherited by xdist's workers
                try:
                    code = pytest.main(pytest_args(args, report), plugins=[stopper])
                finally:
                    del os.environ[progress.PROGRESS_ENV]
    finally:
        signal.signal(signal.SIGINT, previous)
    status = _report_status(report, code)
    if args.html and Path(report).is_file():
        from ckptspec.html_report import conformance_html

        Path(args.html).write_text(
            conformance_html(json.loads(Path(report).read_text())), encoding="utf-8"
        )
        print(f"ckptspec conformance: HTML report written to {args.html}", file=sys.stderr)
    if stopper.interrupted or code == pytest.ExitCode.INTERRUPTED:
        kept = f"; partial report in {report}" if Path(report).is_file() else ""
        print(f"ckptspec conformance: interrupted{kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status


def _report_status(report: str, code: int | None) -> int:
    if not Path(report).is_file():
        return EXIT_ERROR if code != 0 else EXIT_OK
    return int(json.loads(Path(report).read_text())["exit_status"])
