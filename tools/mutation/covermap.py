"""The coverage map: which conformance tests execute each line of the mutated modules.

Recorded once on the unmutated tree (``record``) by running the whole suite with coverage.py in
every process, which is where the code under test runs: ``hook/sitecustomize.py`` starts coverage
(``COVERAGE_PROCESS_START``) in every interpreter, pytest's and the suite's forkserver, and
coverage's ``patch = fork`` restarts it in each rank process forked from the forkserver, under the
dynamic context of the test running then (``mutation_plugin`` names it in a file). A line run
outside any test (the forkserver's and pytest's imports: module-level code) counts as covered by
every test. ``sys.monitoring`` would be cheaper, but it needs Python 3.12 and the suite supports
3.11 (this environment runs 3.11.7).

The map is keyed by content: the sha256 of the suite (every file of ``ckptspec/conformance``)
and of each mutated module. :func:`stale` names what changed since it was recorded; the runner
never selects tests from a stale entry.

A *partial* map (``mutation.py map --test``: only some tests recorded) can confirm kills but not
survivals: the runner records only the kills it finds with one, and leaves the rest pending.

Granularity is the test: a test's phases (save, kill, resume, compare) depend on each other, so
pytest cannot run one alone. Lines that only a SIGKILLed rank executed are not recorded (coverage
is saved when a process exits); a mutant there counts as not covered, i.e. survived, so the map
can only lower the kill rate, never raise it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HOOK = Path(__file__).resolve().parent / "hook"
SUITE = "ckptspec/conformance"


def sha256(text: str) -> str:
    """Hex sha256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()


def suite_hash(tree: Path, folder: str = SUITE) -> str:
    """sha256 over the paths and contents of the files under ``folder`` (default: the suite's) in
    the import tree ``tree``."""
    digest = hashlib.sha256()
    for path in sorted((tree / folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(
                path.relative_to(tree).as_posix().encode() + b"\0" + path.read_bytes() + b"\0"
            )
    return digest.hexdigest()


def stale(covmap: dict[str, Any] | None, tree: Path, modules: dict[str, str]) -> list[str]:
    """Why ``covmap`` cannot select tests for ``modules`` ({repository path: import-tree path}) in
    ``tree``; empty when it can."""
    if covmap is None:
        return ["there is no coverage map"]
    if covmap["suite_sha256"] != suite_hash(tree):
        return ["the suite (ckptspec/conformance) changed since the map was recorded"]
    return [
        f"{path} changed since the map was recorded"
        for path, rel in modules.items()
        if covmap["modules"].get(path, {}).get("sha256") != sha256((tree / rel).read_text())
    ]


def statement_lines(source: str) -> dict[int, range]:
    """For every line of ``source``, the lines of the statement that holds it (for a compound
    statement: its header, up to its body). Coverage records a multi-line statement at whichever
    of its lines the interpreter reports, so a mutant is covered by a test that ran any of them."""
    spans: dict[int, range] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.stmt):
            continue
        end = node.end_lineno or node.lineno
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            end = max(node.lineno, body[0].lineno - 1)
            decorators = getattr(node, "decorator_list", [])
            start = min([node.lineno, *(d.lineno for d in decorators)])
        else:
            start = node.lineno
        span = range(start, end + 1)
        for line in span:
            if line not in spans or len(span) < len(spans[line]):
                spans[line] = span
    return spans


def covering_tests(
    covmap: dict[str, Any], path: str, source: str, first: int, last: int
) -> list[str]:
    """The tests that ran any line of the statements holding lines ``first``..``last`` of module
    ``path``, cheapest first (by their recorded seconds)."""
    entry = covmap["modules"][path]
    spans = statement_lines(source)
    lines = {line for n in range(first, last + 1) for line in spans.get(n, range(n, n + 1))}
    indices = {
        t
        for line in lines
        if str(line) in entry["lines"]
        for t in covmap["sets"][entry["lines"][str(line)]]
    }
    return sorted(
        (covmap["tests"][t] for t in indices), key=lambda t: (covmap["seconds"].get(t, 0.0), t)
    )


def record(
    tree: Path,
    modules: dict[str, str],
    workdir: Path,
    argv: list[str],
    env: dict[str, str],
    timeout_s: float,
    timeout_factor: float = 3.0,
    only: Sequence[str] = (),
) -> tuple[dict[str, Any] | None, str]:
    """Run the whole suite (``argv``, a pytest command; ``only``: just these tests, a *partial*
    map) on ``tree`` with coverage in every process, its phase deadlines ``timeout_factor`` times
    the profile's (coverage slows the ranks down); (the map, pytest's output tail), or (None, the
    output tail) if the suite did not pass."""
    workdir.mkdir(parents=True, exist_ok=True)
    data, context, timing = workdir / "coverage", workdir / "context", workdir / "timing.json"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir()
    context.write_text("")
    rcfile = workdir / "coveragerc"
    include = "\n    ".join(str(tree / rel) for rel in modules.values())
    rcfile.write_text(
        f"[run]\ndata_file = {data / '.coverage'}\nparallel = true\npatch = fork\ninclude =\n    {include}\n"
    )
    env = {
        **env,
        "COVERAGE_PROCESS_START": str(rcfile),
        "CKPTSPEC_MUTATION_CONTEXT": str(context),
        "CKPTSPEC_MUTATION_TIMING": str(timing),
        "CKPTSPEC_MUTATION_TIMEOUT_FACTOR": str(timeout_factor),
        "PYTHONPATH": os.pathsep.join([str(HOOK), env["PYTHONPATH"]]),
    }
    if only:
        (workdir / "select").write_text("\n".join(only) + "\n")
        env["CKPTSPEC_MUTATION_SELECT"] = str(workdir / "select")
    try:
        proc = subprocess.run(
            argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout_s
        )
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"timed out after {timeout_s:.0f} s\n{exc.stdout or ''}"
    if code != 0 or not timing.is_file():
        return None, str(output)[-20000:]
    import coverage

    cov = coverage.Coverage(config_file=str(rcfile))
    cov.combine([str(data)])
    measured = cov.get_data()
    timings = json.loads(timing.read_text())
    seconds = timings["tests"]
    tests = sorted(seconds)
    index = {t: n for n, t in enumerate(tests)}
    users = {
        label: {index[t] for t in used if t in index} for label, used in timings["memo"].items()
    }
    users[""] = set(
        index.values()
    )  # outside any test: module-level code, run by every test's imports
    sets: list[list[int]] = []
    set_index: dict[tuple[int, ...], int] = {}
    covmap: dict[str, Any] = {
        "suite_sha256": suite_hash(tree),
        "tests": tests,
        "seconds": seconds,
        "sets": sets,
        "modules": {},
    }
    if only:
        covmap["partial"] = True
    covmap["tree_sha256"] = suite_hash(
        tree, "ckptspec"
    )  # the recording passed on this tree: a baseline
    for path, rel in modules.items():
        lines: dict[str, int] = {}
        for line, contexts in sorted(measured.contexts_by_lineno(str(tree / rel)).items()):
            key = tuple(
                sorted(
                    {index[c] for c in contexts if c in index}.union(
                        *(users.get(c, ()) for c in contexts)
                    )
                )
            )
            if key:
                lines[str(line)] = set_index.setdefault(key, len(set_index))
                if len(sets) < len(set_index):
                    sets.append(list(key))
        covmap["modules"][path] = {"sha256": sha256((tree / rel).read_text()), "lines": lines}
    return covmap, str(output)[-4000:]


def write(covmap: dict[str, Any], path: Path) -> None:
    """Write the map as compact JSON, one module a line."""
    head = {k: v for k, v in covmap.items() if k != "modules"}
    body = ",\n".join(
        f" {json.dumps(p)}: {json.dumps(m, separators=(',', ':'))}"
        for p, m in covmap["modules"].items()
    )
    path.write_text(
        json.dumps(head, separators=(",", ":"))[:-1] + ',\n"modules": {\n' + body + "\n}}\n"
    )
