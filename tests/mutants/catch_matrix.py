"""Run the conformance suite against the clean reference and every mutant; print the catch matrix.

Usage::

    python tests/mutants/catch_matrix.py [--fast | --full] [-n N] [--only NAME ...]
    python tests/mutants/catch_matrix.py --markdown      # the registry as the docs' table; runs nothing

Each target is one ``pytest --pyargs ckptspec.conformance.tests`` subprocess (quick profile,
derandomized, its own ``--basetemp`` and JSON report), with this directory on ``PYTHONPATH`` so
that the suite's rank processes can import the mutants.

- ``--fast`` (default): each mutant runs only the tests whose ``requirement`` marker names one of
  its expected requirements (the suite plugin's ``--ckptspec-select-requirement``), and
  stops at the first test that fails one of them; the clean reference runs the union of those
  tests to the end.
- ``--full``: the whole suite for the clean reference and for every mutant.

Verdicts: a mutant is CAUGHT iff the report's outcome of at least one of its expected
requirements is ``fail`` (``error``, ``blocked`` or ``skipped`` do not count, nor does a failure
of another requirement). The clean reference passes iff pytest exits 0, the report's exit status
is 0, no requirement is ``fail`` or ``error``, and every expected requirement of every mutant run
is ``pass``. The last line is ``caught N/M``; the exit status is 0 iff N = M and the clean
reference passed. GPU-only mutants are listed but neither run nor counted without CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

CLEAN_ADAPTER = "ckptspec.reference_impl.adapter:ReferenceAdapter"
CLEAN = "clean reference"
DEFAULT_TIMEOUT_S = 900
DOC_BEGIN = "<!-- begin generated: python tests/mutants/catch_matrix.py --markdown -->"
DOC_END = "<!-- end generated -->"


@dataclass(frozen=True)
class Target:
    """One suite run: an adapter and the requirements whose tests to run (None: the whole suite)."""

    label: str
    adapter: str
    select: tuple[str, ...] | None


@dataclass
class Outcome:
    """What one suite run reported."""

    target: Target
    returncode: int
    seconds: float
    requirements: dict[str, str] = field(default_factory=dict)  # requirement ID -> report outcome
    exit_status: int | None = None  # the report's, None without a report
    tail: str = ""  # the end of pytest's output, for diagnosis

    def with_outcome(self, *outcomes: str) -> list[str]:
        """Requirement IDs whose outcome is one of ``outcomes``, in registry order."""
        return [r for r, o in self.requirements.items() if o in outcomes]


def pytest_command(target: Target, report: Path, basetemp: Path, profile: str) -> list[str]:
    """The pytest command line of ``target``."""
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        "ckptspec.conformance.tests",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
        "--ckptspec-adapter",
        target.adapter,
        "--ckptspec-profile",
        profile,
        "--ckptspec-derandomize",
        "--ckptspec-report",
        str(report),
        "--basetemp",
        str(basetemp),
    ]
    if target.select is not None:
        for requirement in target.select:
            argv += ["--ckptspec-select-requirement", requirement]
        if target.adapter != CLEAN_ADAPTER:
            argv.append(
                "--ckptspec-stop-on-requirement-failure"
            )  # one failure of a selected requirement decides
    return argv


def suite_env() -> dict[str, str]:
    """The environment of a suite run: this directory importable, one thread, no adapter override."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CKPTSPEC_ADAPTER", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_target(target: Target, workdir: Path, profile: str, timeout_s: float) -> Outcome:
    """Run the suite for ``target`` in a private directory under ``workdir``; never raises for a suite failure."""
    where = workdir / target.label.replace(" ", "_")
    where.mkdir(parents=True, exist_ok=True)
    report = where / "report.json"
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            pytest_command(target, report, where / "basetemp", profile),
            cwd=where,
            env=suite_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"timed out after {timeout_s:.0f} s\n{exc.stdout or ''}"
    outcome = Outcome(target, code, time.perf_counter() - started, tail=str(output)[-4000:])
    if report.is_file():
        document = json.loads(report.read_text())
        outcome.requirements = {row["id"]: row["outcome"] for row in document["requirements"]}
        outcome.exit_status = int(document["exit_status"])
    (where / "pytest.log").write_text(str(output))
    return outcome


def is_caught(mutant_requirements: Iterable[str], outcome: Outcome) -> bool:
    """Whether the suite failed at least one of the mutant's expected requirements."""
    return any(outcome.requirements.get(r) == "fail" for r in mutant_requirements)


def clean_problems(outcome: Outcome, expected: Iterable[str]) -> list[str]:
    """Why the clean reference run does not count as passing (empty: it passed)."""
    problems = []
    if outcome.exit_status is None:
        problems.append(f"no report (pytest exit {outcome.returncode})")
    elif outcome.returncode != 0 or outcome.exit_status != 0:
        problems.append(
            f"pytest exit {outcome.returncode}, report exit status {outcome.exit_status}"
        )
    problems += [f"{r}: {outcome.requirements[r]}" for r in outcome.with_outcome("fail", "error")]
    problems += [
        f"{r}: {outcome.requirements.get(r, 'absent')} (expected pass)"
        for r in sorted(set(expected))
        if outcome.exit_status is not None and outcome.requirements.get(r) != "pass"
    ]
    return problems


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def markdown_table(mutants: Sequence[object]) -> str:
    """The catch matrix of the registry as a markdown table (one row per mutant / bug class)."""
    lines = [
        "| Bug class | Mutant | Injected bug (the one overridden method) | Must be caught by |",
        "|---|---|---|---|",
    ]
    for m in mutants:
        reqs = ", ".join(m.caught_by) + (" (GPU only)" if m.gpu_only else "")  # type: ignore[attr-defined]
        lines.append(f"| {m.bug_class} | `{m.name}` | {m.bug} (`{m.broken}`) | {reqs} |")  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def print_matrix(rows: list[tuple[str, str, str, str, str]]) -> None:
    header = ("mutant", "bug", "expected", "failed", "verdict")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    widths[1] = min(widths[1], 48)
    print(_row(header, widths))
    for r in rows:
        print(_row((r[0], r[1][:48], *r[2:]), widths))


def plan(mutants: Sequence[object], full: bool) -> list[Target]:
    """The clean reference first, then one target per mutant (fast form: only its requirements' tests)."""
    expected = sorted({r for m in mutants for r in m.caught_by})  # type: ignore[attr-defined]
    targets = [Target(CLEAN, CLEAN_ADAPTER, None if full else tuple(expected))]
    targets += [Target(m.name, m.import_string, None if full else m.caught_by) for m in mutants]  # type: ignore[attr-defined]
    return targets


def run_all(
    targets: Sequence[Target],
    workdir: Path,
    *,
    jobs: int = 2,
    profile: str = "quick",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: bool = False,
) -> dict[str, Outcome]:
    """Run every target, ``jobs`` at a time, in the order given; outcomes by label."""
    outcomes: dict[str, Outcome] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_target, t, workdir, profile, timeout_s) for t in targets]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[outcome.target.label] = outcome
            if progress:
                print(
                    f"  done {outcome.target.label} in {outcome.seconds:.1f} s "
                    f"(failed: {', '.join(outcome.with_outcome('fail')) or '-'})",
                    flush=True,
                )
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    import mutants as registry

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    form = parser.add_mutually_exclusive_group()
    form.add_argument(
        "--fast",
        action="store_true",
        help="per mutant, only the tests of its requirements (default)",
    )
    form.add_argument("--full", action="store_true", help="the whole suite per mutant")
    form.add_argument(
        "--markdown",
        action="store_true",
        help="print the registry as the docs' markdown table and exit",
    )
    parser.add_argument(
        "-n", "--jobs", type=int, default=2, help="suite runs at a time (default 2)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this mutant (repeatable)",
    )
    parser.add_argument(
        "--profile",
        choices=("quick", "full"),
        default="quick",
        help="suite profile (default quick)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per suite run"
    )
    parser.add_argument(
        "--workdir", default=None, help="keep run directories, reports and logs here"
    )
    args = parser.parse_args(argv)

    if args.markdown:
        sys.stdout.write(markdown_table(registry.MUTANTS))
        return 0
    chosen = [registry.by_name(n) for n in args.only] if args.only else list(registry.MUTANTS)
    gpu = cuda_available()
    runnable = [m for m in chosen if gpu or not m.gpu_only]
    skipped = [m for m in chosen if m not in runnable]
    workdir = (
        Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ckptspec-mutants-"))
    )
    workdir.mkdir(parents=True, exist_ok=True)
    form_name = "full" if args.full else "fast"
    print(
        f"catch matrix ({form_name} form, {args.profile} profile, {args.jobs} at a time): "
        f"{len(runnable)} mutants + clean reference; work in {workdir}",
        flush=True,
    )
    started = time.perf_counter()
    outcomes = run_all(
        plan(runnable, args.full),
        workdir,
        jobs=args.jobs,
        profile=args.profile,
        timeout_s=args.timeout,
        progress=True,
    )
    wall = time.perf_counter() - started

    problems = clean_problems(outcomes[CLEAN], {r for m in runnable for r in m.caught_by})
    rows = []
    caught = 0
    for m in runnable:
        o = outcomes[m.name]
        hit = is_caught(m.caught_by, o)
        caught += hit
        failed = ", ".join(o.with_outcome("fail")) or (
            "(no report)" if o.exit_status is None else "-"
        )
        errors = o.with_outcome("error")
        verdict = (
            "CAUGHT" if hit else "MISSED" + (f" (errors: {', '.join(errors)})" if errors else "")
        )
        rows.append((m.name, m.bug_class, ", ".join(m.caught_by), failed, verdict))
    rows += [
        (m.name, m.bug_class, ", ".join(m.caught_by), "-", "NOT RUN (GPU only)") for m in skipped
    ]
    print()
    print_matrix(rows)
    print(
        f"\nclean reference: {'PASS' if not problems else 'FAIL: ' + '; '.join(problems)} "
        f"({outcomes[CLEAN].seconds:.1f} s)"
    )
    print(f"wall time: {wall:.1f} s ({form_name} form, {args.jobs} at a time)")
    print(f"caught {caught}/{len(runnable)}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if caught == len(runnable) and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
