#!/usr/bin/env python3
"""Run every example case of this directory against a validator, in any language.

    python run_cases.py [--deep-flag=FLAG] [--case ID]... [--jobs N] -- COMMAND [ARG...]

The command contract (see README.md): for each case, the runner runs

    COMMAND [ARG...] [FLAG] TARGET

where TARGET is the absolute path the case names, FLAG is given only for a case with
``"deep": true`` (and only when ``--deep-flag`` is set), and the environment holds
``CKPTSPEC_DEEP=1`` or ``CKPTSPEC_DEEP=0``. The implementation prints one line per finding on
standard output whose first word is the finding's code (nothing else on standard output), and
exits 0 when the target is conformant (no error; warnings allowed), 1 when it is not conformant,
2 when it cannot be checked. The runner passes a case when the set of printed codes equals the
case's ``codes`` and the exit status gives the case's ``verdict``.

Only the Python standard library is used. Exit status: 0 when every case passes, 1 otherwise, 2
on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERDICTS = {0: "conformant", 1: "not_conformant", 2: "not_checked"}
CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def cases(root: Path) -> list[tuple[str, Path, dict]]:
    """Every case below ``root``: its id (``kind/[section/]name``), directory and ``case.json``."""
    found = []
    for case_file in sorted(root.rglob("case.json")):
        found.append((case_file.parent.relative_to(root).as_posix(), case_file.parent, json.loads(case_file.read_text(encoding="utf-8"))))
    return found


def target(directory: Path, spec: dict, scratch: Path) -> Path:
    """The path to validate; a case with ``materialize`` is written under ``scratch`` first."""
    recipe = spec.get("materialize")
    if recipe is None:
        return (directory / spec["path"]).absolute()
    path = scratch / recipe["file"]
    with open(path, "wb") as f:
        f.write(recipe["prefix"].encode())
        f.write(recipe["pad"].encode() * (recipe["size"] - len(recipe["prefix"])))
    return path


def check(command: list[str], deep_flag: str | None, directory: Path, spec: dict, timeout: float) -> str | None:
    """Why the implementation fails the case (None when it passes)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = target(directory, spec, Path(scratch))
        argv = command + ([deep_flag] if spec["deep"] and deep_flag else []) + [str(path)]
        env = {**os.environ, "CKPTSPEC_DEEP": "1" if spec["deep"] else "0"}
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, errors="backslashreplace")
        except subprocess.TimeoutExpired:
            return f"no answer within {timeout:g} s"
        except OSError as exc:
            return f"cannot run {argv[0]}: {exc.strerror}"
    words = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    not_codes = [w for w in words if not CODE.match(w)]
    if not_codes:
        return f"stdout has a line that does not start with a code: {not_codes[0]!r}"
    verdict = VERDICTS.get(done.returncode)
    if verdict is None:
        return f"exit status {done.returncode} (expected 0, 1 or 2); stderr: {done.stderr.strip()[-300:]}"
    codes = sorted(set(words))
    if codes != spec["codes"] or verdict != spec["verdict"]:
        return f"printed {codes} with verdict {verdict}; expected {spec['codes']} with verdict {spec['verdict']}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the ckptspec example cases against a validator command.")
    parser.add_argument("--deep-flag", help="argument inserted before the path for a case with deep: true (write --deep-flag=--deep)")
    parser.add_argument("--case", action="append", default=[], metavar="ID", help="run only this case (repeatable), e.g. invalid/layout/file-missing")
    parser.add_argument("--jobs", type=int, default=1, help="cases run at once (default 1)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case (default 120)")
    parser.add_argument("--examples", type=Path, default=HERE, help="the example cases' directory (default: this script's)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given: run_cases.py [options] -- COMMAND [ARG...]")
    selected = [c for c in cases(args.examples) if not args.case or c[0] in args.case]
    unknown = set(args.case) - {c[0] for c in selected}
    if unknown or not selected:
        parser.error(f"no such case: {', '.join(sorted(unknown)) or 'none found'}")
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        problems = list(pool.map(lambda c: check(command, args.deep_flag, c[1], c[2], args.timeout), selected))
    failed = 0
    for number, ((case_id, _, _), problem) in enumerate(zip(selected, problems), 1):
        failed += problem is not None
        print(f"ok {number} - {case_id}" if problem is None else f"not ok {number} - {case_id}: {problem}")
    print(f"1..{len(selected)}\n# {len(selected) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
