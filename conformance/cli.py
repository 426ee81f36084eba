"""``ckptspec conformance``: run the conformance suite against an adapter.

Runs ``pytest --pyargs ckptspec.conformance.tests`` in-process with the suite's options, prints
pytest's output (with the requirement summary table) and, on stderr, a line per finished phase (a
live line of the running phases on a terminal; see :mod:`ckptspec.conformance.progress`). Exits 0
when every MUST requirement holds, 1 when one fails, 2 when the harness itself broke or pytest
could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from ckptspec.exit_codes import EXIT_ERROR, EXIT_OK


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the subcommand's options."""
    parser.add_argument("--adapter", default=None, metavar="MODULE:OBJECT",
                        help="adapter under test (default: $CKPTSPEC_ADAPTER or the reference adapter)")
    parser.add_argument("--profile", choices=("quick", "full"), default="quick", help="how much to explore (default quick)")
    parser.add_argument("--max-examples", type=int, default=None, metavar="N", help="Hypothesis examples per scenario test")
    parser.add_argument("--report", default=None, metavar="PATH", help="also write the JSON report here")
    parser.add_argument("--junitxml", default=None, metavar="PATH", help="also write a junit XML report here")
    parser.add_argument("--xfails", default=None, metavar="PATH", help="file of test ids expected to fail")
    parser.add_argument("--derandomize", action="store_true", help="fixed examples (Hypothesis' ci profile does this when CI is set)")
    parser.add_argument("--requirement", action="append", default=[], metavar="ID",
                        help="only the tests that check requirement ID (repeatable)")
    parser.add_argument("-n", "--numprocesses", default=None, metavar="N", help="pytest-xdist workers (e.g. 2 or auto)")
    parser.add_argument("-k", dest="keyword", default=None, metavar="EXPR", help="only tests matching this pytest -k expression")
    parser.add_argument("pytest_args", nargs="*", metavar="PYTEST_ARG", help="extra pytest arguments (after --)")


def pytest_args(args: argparse.Namespace, report: str) -> list[str]:
    """The pytest command line for ``args``, writing the JSON report to ``report``."""
    argv = ["--pyargs", "ckptspec.conformance.tests", "-p", "no:cacheprovider", "-q", "-rfE",
            "--ckptspec-profile", args.profile, "--ckptspec-report", report]
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


def run(args: argparse.Namespace) -> int:
    """Run the suite; the exit status follows the requirement outcomes in the JSON report."""
    import pytest

    from ckptspec.conformance import progress

    with tempfile.TemporaryDirectory(prefix="ckptspec-conformance-") as scratch:
        report = os.path.abspath(args.report) if args.report else str(Path(scratch) / "report.json")
        # Progress goes to a copy of stderr: pytest's capture redirects fd 2 itself while a test runs.
        with os.fdopen(os.dup(2), "w") as stderr, progress.ProgressPrinter(Path(scratch), stderr) as printer:
            os.environ[progress.PROGRESS_ENV] = str(printer.path)  # inherited by xdist's workers
            try:
                code = pytest.main(pytest_args(args, report))
            finally:
                del os.environ[progress.PROGRESS_ENV]
        if not Path(report).is_file():
            return EXIT_ERROR if code != 0 else EXIT_OK
        return int(json.loads(Path(report).read_text())["exit_status"])
