"""Mutation testing of the reference trainer's checkpoint/resume path, the conformance suite as oracle.

Usage (``make mutation`` and ``make mutation-ci`` wrap the first and the last)::

    python tools/mutation/mutation.py run [--budget-minutes M] [--module PATH ...] [--source REV] [--refresh-map]
    python tools/mutation/mutation.py map [--source REV]
    python tools/mutation/mutation.py sample [--source REV]
    python tools/mutation/mutation.py report [--check]
    python tools/mutation/mutation.py ci [--budget-minutes M] [--base REV]

Every command copies the project (the working tree's tracked and untracked, non-ignored files;
``--source REV``: that commit) into a scratch directory laid out as the installed ``ckptspec``
package, first on ``PYTHONPATH`` of every suite run, and mutates only that copy. The committed
records are text:

- ``results/<module>.json``: the module's mutants (cosmic-ray's, enumerated by ``cosmic-ray
  init`` into a throw-away session in the scratch directory, then ``cr-filter-operators``) with
  their stable ids (:func:`mutant_id`), operator, line, definition and diff hash; the operator
  filter's drop counts; and per judged mutant its outcome, seconds, tests run, the test that
  killed it and, for a survivor, its diff.
- ``sample.json``: the seed and the stratified sample (:mod:`sampling`): per module a share of the
  in-scope mutants proportional to its population, at least ``size`` in all.
- ``coverage-map.json``: which tests execute each line of the modules (:mod:`covermap`).

``run`` judges the sampled mutants that have no result yet, so a run that ran out of budget is
continued by the next; results stay with their mutant id across edits of the module (the id does
not change while the mutated lines, their function and the operator stay the same). Per mutant
the oracle runs only the tests that cover its line, cheapest first, quick profile, derandomized,
stopping at the first failure (``-x``); a mutant on a line no test executes is *not covered* (a
survivor) without a run. Verdicts: **killed**: the run exits 1 and its report marks a
requirement ``fail``, or it runs past its timeout; **survived**: the tests pass; exit 1 with no
requirement ``fail`` (a harness error) is no verdict and the mutant stays pending;
**incompetent** (not counted): any other exit status. The map must be current (its suite and
module hashes those of the tree); ``--refresh-map`` records it again when it is not, and that
recording, a whole-suite run, is the baseline; otherwise the unmutated copy must first pass the
whole suite. Exit status 2: could not run.

``ci`` re-judges, within the budget, the sampled mutants that were killed in the modules a change
touches (modules whose content differs from the recorded one, or from ``--base``; every module
when the suite changed): first the test that killed each, then the rest of its covering tests
(the whole suite when the map is stale). Exit 1 when one now survives: the change weakened the
suite. It writes nothing.

``report`` writes ``docs/mutation.md`` from the records and the hand-edited ``triage.toml``.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIG = HERE / "modules.toml"
TRIAGE = HERE / "triage.toml"
RESULTS = HERE / "results"
SAMPLE = HERE / "sample.json"
MAP = HERE / "coverage-map.json"
DOC = REPO / "docs" / "mutation.md"
SUITE_ADAPTER = "ckptspec.reference_impl.adapter:ReferenceAdapter"
MIN_TIMEOUT_S = 300.0
VERDICTS = ("equivalent", "out of scope", "gap")

sys.path.insert(0, str(REPO / "tests" / "mutants"))
import covermap  # noqa: E402
import sampling  # noqa: E402
from catch_matrix import Target, pytest_command, suite_env  # noqa: E402  (tests/mutants/catch_matrix.py)


@dataclass(frozen=True)
class ModuleConfig:
    """One ``[[module]]`` table of ``modules.toml``."""

    path: str
    requirements: tuple[str, ...]
    functions: frozenset[str] | None = None

    @property
    def slug(self) -> str:
        """The file-name stem of this module's result files, e.g. ``reference_impl-rng``."""
        return self.path.removesuffix(".py").replace("/", "-")


@dataclass(frozen=True)
class Config:
    """``modules.toml``: the operator filter, the sample's seed and size, and the modules, in run order."""

    exclude_operators: tuple[str, ...]
    modules: tuple[ModuleConfig, ...]
    seed: int = 0
    size: int = 150

    def module(self, path: str) -> ModuleConfig:
        """The module configured for repository path ``path``; ValueError naming the known ones otherwise."""
        for m in self.modules:
            if m.path == path:
                return m
        raise ValueError(
            f"{path!r} is not a module of {CONFIG.name} (known: {', '.join(m.path for m in self.modules)})"
        )


def load_config(path: Path = CONFIG) -> Config:
    """Parse ``modules.toml``."""
    raw = tomllib.loads(path.read_text())
    modules = tuple(
        ModuleConfig(
            m["path"],
            tuple(m["requirements"]),
            frozenset(m["functions"]) if "functions" in m else None,
        )
        for m in raw["module"]
    )
    return Config(
        tuple(raw["operators"]["exclude"]),
        modules,
        int(raw["sample"]["seed"]),
        int(raw["sample"]["size"]),
    )


def package_dirs(pyproject: Path) -> dict[str, str]:
    """pyproject's ``package-dir`` as {repository folder: folder in the import tree}, longest first."""
    mapping = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"]
    pairs = {folder.rstrip("/"): package.replace(".", "/") for package, folder in mapping.items()}
    return dict(sorted(pairs.items(), key=lambda kv: -len(kv[0])))


def import_path(repo_path: str, dirs: dict[str, str]) -> str | None:
    """Where repository file ``repo_path`` lives in the import tree (None: not part of a package)."""
    for folder, package in dirs.items():
        if repo_path.startswith(folder + "/"):
            return package + repo_path[len(folder) :]
    return None


# --- stable mutant ids --------------------------------------------------------------------------


def mutant_diff(original: str, mutated: str, repo_path: str) -> str:
    """The unified diff (one line of context) of a mutant, headed by the repository path."""
    lines = difflib.unified_diff(
        original.split("\n"),
        mutated.split("\n"),
        f"a/{repo_path}",
        f"b/{repo_path}",
        n=1,
        lineterm="",
    )
    return "\n".join(lines)


def mutant_id(slug: str, operator: str, definition: str | None, diff: str, taken: set[str]) -> str:
    """A mutant's id: stable while the mutated lines, their function and the operator stay the same.

    Hashes the operator, the enclosing definition and the diff's changed lines (not their line
    numbers), so edits elsewhere in the module keep every id; identical mutants of one module get
    ``-2``, ``-3``... in source order. ``taken`` is updated.
    """
    changed = [
        line
        for line in diff.split("\n")
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    digest = hashlib.sha256("\n".join([operator, definition or "", *changed]).encode()).hexdigest()[
        :10
    ]
    base = f"{slug}-{digest}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    taken.add(candidate)
    return candidate


# --- the scratch tree ---------------------------------------------------------------------------


def copy_tree(dest: Path, source: str | None = None) -> Path:
    """Copy the project into ``dest`` as an import tree (``dest/ckptspec/...``) and return ``dest``.

    ``source`` None: the working tree's tracked and untracked non-ignored files, as they are now;
    otherwise the tree of that commit (``git archive``). Only files under a ``package-dir`` folder
    are copied (the tests and docs are not imported by the suite).
    """
    dirs = package_dirs(REPO / "pyproject.toml")
    if source is None:
        listing = (
            subprocess.run(
                ["git", "ls-files", "-z", "-co", "--exclude-standard"],
                cwd=REPO,
                capture_output=True,
                check=True,
            )
            .stdout.decode()
            .split("\0")
        )
        for rel in filter(None, listing):
            target = import_path(rel, dirs)
            if target is not None and (REPO / rel).is_file():
                (dest / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, dest / target)
        return dest
    archive = subprocess.run(
        ["git", "archive", "--format=tar", source], cwd=REPO, capture_output=True, check=True
    )
    with tempfile.TemporaryDirectory() as unpack:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(
                unpack, filter="fully_trusted"
            )  # our own commit; example cases hold links
        for path in Path(unpack).rglob("*"):
            target = import_path(path.relative_to(unpack).as_posix(), dirs)
            if target is not None and path.is_file():
                (dest / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / target)
    return dest


def check_imports_from(tree: Path, modules: Iterable[str], env: dict[str, str]) -> None:
    """Raise RuntimeError unless a fresh interpreter with ``env`` imports every module from ``tree``."""
    code = (
        "import importlib, sys\nfor m in sys.argv[1:]: print(importlib.import_module(m).__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *modules], env=env, capture_output=True, text=True, timeout=300
    )
    files = out.stdout.split()
    if out.returncode != 0 or any(
        not Path(f).resolve().is_relative_to(tree.resolve()) for f in files
    ):
        raise RuntimeError(
            f"the mutated tree is not what the suite imports: {out.stdout}{out.stderr}"
        )


# --- mutants ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    """One cosmic-ray mutant of a module, as enumerated from the current source."""

    id: str
    operator: str
    occurrence: int
    line: int
    end_line: int
    definition: str
    diff: str
    in_scope: bool  # False: outside the module's listed ``functions``


def _filter_hash(config: Config) -> str:
    return hashlib.sha256(json.dumps(config.exclude_operators).encode()).hexdigest()[:16]


def enumerate_mutants(
    module: ModuleConfig, config: Config, tree: Path, workdir: Path
) -> tuple[list[Mutant], dict[str, int]]:
    """The mutants of ``module`` in ``tree`` that pass the operator filter, by id, and how many the
    filter dropped per operator. cosmic-ray's session database is made in ``workdir`` and left there."""
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator
    from cosmic_ray.work_db import WorkDB, use_db

    rel = import_path(module.path, package_dirs(REPO / "pyproject.toml"))
    assert rel is not None, module.path
    source = (tree / rel).read_text()
    db_file, cr_config = workdir / f"{module.slug}.sqlite", workdir / f"{module.slug}.toml"
    db_file.unlink(missing_ok=True)
    cr_config.write_text(_cosmic_ray_config(rel, config))
    bindir = Path(sys.executable).parent
    for argv in (
        [str(bindir / "cosmic-ray"), "init", str(cr_config), str(db_file)],
        [str(bindir / "cr-filter-operators"), str(db_file), str(cr_config)],
    ):
        subprocess.run(argv, cwd=tree, check=True, capture_output=True)
    mutants: list[Mutant] = []
    dropped: dict[str, int] = {}
    taken: set[str] = set()
    with use_db(str(db_file), WorkDB.Mode.open) as db:
        filtered = {job for job, _ in db.results}
        for item in sorted(
            db.work_items, key=lambda w: (w.mutations[0].operator_name, w.mutations[0].occurrence)
        ):
            spec = item.mutations[0]
            if item.job_id in filtered:
                dropped[spec.operator_name] = dropped.get(spec.operator_name, 0) + 1
                continue
            mutated = mutate_code(
                source, get_operator(spec.operator_name)(**spec.operator_args), spec.occurrence
            )
            diff = mutant_diff(source, mutated, module.path) if mutated is not None else ""
            in_scope = module.functions is None or spec.definition_name in module.functions
            mutants.append(
                Mutant(
                    mutant_id(module.slug, spec.operator_name, spec.definition_name, diff, taken),
                    spec.operator_name,
                    spec.occurrence,
                    spec.start_pos[0],
                    spec.end_pos[0],
                    spec.definition_name or "",
                    diff,
                    in_scope,
                )
            )
    return sorted(mutants, key=lambda m: m.id), dropped


def _cosmic_ray_config(rel: str, config: Config) -> str:
    excludes = ", ".join(json.dumps(e) for e in config.exclude_operators)
    return (
        "[cosmic-ray]\n"
        f'module-path = "{rel}"\ntimeout = {MIN_TIMEOUT_S}\nexcluded-modules = []\n'
        "# the runner judges the mutants itself\n"
        'test-command = "false"\n\n[cosmic-ray.distributor]\nname = "local"\n\n'
        f"[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excludes}]\n"
    )


# --- the records --------------------------------------------------------------------------------


def record_path(module: ModuleConfig, results: Path = RESULTS) -> Path:
    """The module's committed record (see the module docstring)."""
    return results / f"{module.slug}.json"


def load_record(module: ModuleConfig, results: Path = RESULTS) -> dict[str, Any]:
    """The module's record, or an empty one."""
    path = record_path(module, results)
    if path.is_file():
        return json.loads(path.read_text())
    return {
        "module": module.path,
        "source_sha256": "",
        "operator_filter": "",
        "filtered": {},
        "mutants": {},
        "results": {},
        "runs": [],
    }


def save_record(record: dict[str, Any], module: ModuleConfig, results: Path = RESULTS) -> None:
    """Write the record: one mutant or result a line, so that diffs of it stay readable."""
    results.mkdir(parents=True, exist_ok=True)
    lines = ["{"]
    items = [(k, v) for k, v in sorted(record.items()) if k not in ("mutants", "results")]
    for key, value in items:
        lines.append(f" {json.dumps(key)}: {json.dumps(value, sort_keys=True)},")
    for key in ("mutants", "results"):
        rows = [
            f"  {json.dumps(mid)}: {json.dumps(row, sort_keys=True)}"
            for mid, row in sorted(record[key].items())
        ]
        lines.append(
            f' "{key}": {{'
            + ("\n" + ",\n".join(rows) + "\n }" if rows else "}")
            + ("," if key == "mutants" else "")
        )
    lines.append("}")
    record_path(module, results).write_text("\n".join(lines) + "\n")


def refresh_table(
    record: dict[str, Any],
    mutants: list[Mutant],
    dropped: dict[str, int],
    source_sha: str,
    config: Config,
) -> None:
    """Replace the record's mutant table with ``mutants`` of the source ``source_sha``; results stay."""
    record["source_sha256"], record["operator_filter"], record["filtered"] = (
        source_sha,
        _filter_hash(config),
        dropped,
    )
    record["mutants"] = {
        m.id: {
            "operator": m.operator,
            "line": m.line,
            "definition": m.definition,
            "diff_sha256": covermap.sha256(m.diff)[:16],
            "in_scope": m.in_scope,
        }
        for m in mutants
    }


# --- the sample ---------------------------------------------------------------------------------


def draw_sample(config: Config, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The stratified sample of the in-scope mutants in ``records`` ({module path: record})."""
    population = {
        path: sorted(m for m, row in rec["mutants"].items() if row["in_scope"])
        for path, rec in records.items()
    }
    counts = sampling.allocate({p: len(ids) for p, ids in population.items()}, config.size)
    return {
        "seed": config.seed,
        "size": config.size,
        "rule": "per module, the k in-scope ids first by "
        "sha256('<seed>:<id>'), k proportional to the module's in-scope population (largest remainder)",
        "modules": {
            p: {
                "source_sha256": records[p]["source_sha256"],
                "population": len(population[p]),
                "ids": sampling.choose(population[p], counts[p], config.seed),
            }
            for p in population
        },
    }


def current_sample(
    config: Config, records: dict[str, dict[str, Any]], path: Path = SAMPLE
) -> dict[str, Any]:
    """The committed sample if it still describes ``records`` (same seed, size and sources), else a fresh draw."""
    if path.is_file():
        sample = json.loads(path.read_text())
        if (
            (sample["seed"], sample["size"]) == (config.seed, config.size)
            and set(sample["modules"]) == set(records)
            and all(
                sample["modules"][p]["source_sha256"] == rec["source_sha256"]
                for p, rec in records.items()
            )
        ):
            return sample
    return draw_sample(config, records)


def write_sample(sample: dict[str, Any], path: Path = SAMPLE) -> None:
    """Write the sample, one module a line."""
    head = {k: v for k, v in sample.items() if k != "modules"}
    body = ",\n".join(f" {json.dumps(p)}: {json.dumps(m)}" for p, m in sample["modules"].items())
    path.write_text(json.dumps(head)[:-1] + ',\n"modules": {\n' + body + "\n}}\n")


# --- the oracle ---------------------------------------------------------------------------------


@dataclass
class Judgement:
    """One suite run of the oracle on one mutant."""

    verdict: str  # killed | survived | incompetent | error
    seconds: float
    output: str
    failed: list[str] = field(default_factory=list)  # requirement IDs the report marks ``fail``
    killed_by: str = ""  # the stable id of the first failed test
    startup_s: float | None = None  # interpreter start to end of collection
    tests_run: int = 0


FAILED_LINE = re.compile(r"^FAILED (\S+?\.py)::(\S+)", re.MULTILINE)


class Oracle:
    """Runs selected tests of the conformance suite on the scratch tree (verdicts: module docstring)."""

    def __init__(self, tree: Path, workdir: Path, env: dict[str, str]) -> None:
        self.tree, self.workdir, self.env = tree, workdir, env

    def run(self, label: str, tests: Sequence[str] | None, timeout_s: float) -> Judgement:
        """Run ``tests`` (stable ids, in this order; None: the whole suite) with ``-x``."""
        where = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=self.workdir))
        report, timing = where / "report.json", where / "timing.json"
        env = {**self.env, "CKPTSPEC_MUTATION_TIMING": str(timing)}
        if tests is not None:
            (where / "select").write_text("\n".join(tests) + "\n")
            env["CKPTSPEC_MUTATION_SELECT"] = str(where / "select")
        argv = pytest_command(
            Target(label, SUITE_ADAPTER, None), report, where / "basetemp", "quick"
        ) + ["-x"]
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=where,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout_s)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            code, output = None, f"timed out after {timeout_s:.0f} s"
        finally:
            if (
                proc.poll() is None or code is None
            ):  # the suite's rank processes are in the same session
                _kill_group(proc)
                proc.communicate()
        seconds = time.perf_counter() - started
        failed = []
        if report.is_file():
            failed = [
                row["id"]
                for row in json.loads(report.read_text())["requirements"]
                if row["outcome"] == "fail"
            ]
        times = (
            json.loads(timing.read_text())
            if timing.is_file()
            else {"collected_s": None, "tests": {}}
        )
        shutil.rmtree(where, ignore_errors=True)
        first = FAILED_LINE.search(output)
        killed_by = ""
        if first:
            killed_by = next(
                (
                    t
                    for t in times["tests"]
                    if t.endswith("::" + first.group(2))
                    and t.split("::")[0].endswith(Path(first.group(1)).stem)
                ),
                first.group(2),
            )
        if code is None:
            verdict = "killed"
        elif code == 0:
            verdict = "survived"
        elif code == 1:
            verdict = "killed" if failed else "error"
        else:
            verdict = "incompetent"
        return Judgement(
            verdict,
            seconds,
            output[-3000:],
            failed,
            killed_by,
            times["collected_s"],
            len(times["tests"]),
        )


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def timeout_for(covmap: dict[str, Any] | None, tests: Sequence[str] | None) -> float:
    """Three times the recorded seconds of ``tests`` (all, when None) plus start-up, at least MIN_TIMEOUT_S."""
    if covmap is None:
        return 3 * MIN_TIMEOUT_S
    seconds = covmap["seconds"]
    return max(
        MIN_TIMEOUT_S,
        3 * sum(seconds.get(t, 60.0) for t in (tests if tests is not None else seconds)) + 120,
    )


# --- the scratch copy ---------------------------------------------------------------------------


@dataclass
class Scratch:
    """The copied tree, its environment and the modules' places in it."""

    root: Path
    tree: Path
    env: dict[str, str]
    rel: dict[str, str]  # repository path -> import-tree path, per configured module

    def source(self, path: str) -> str:
        """The module's source in the copy."""
        return (self.tree / self.rel[path]).read_text()


@contextmanager
def scratch_copy(config: Config, source: str | None) -> Iterator[Scratch]:
    """A scratch copy of the project (see the module docstring), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="ckptspec-mutation-"))
    try:
        tree = copy_tree(root / "tree", source)
        env = suite_env()
        env["PYTHONPATH"] = os.pathsep.join([str(tree), str(HERE), env["PYTHONPATH"]])
        env["PYTHONDONTWRITEBYTECODE"] = (
            "1"  # a mutant of the same size and second must not reuse a .pyc
        )
        env["PYTEST_ADDOPTS"] = "-p mutation_plugin"
        dirs = package_dirs(REPO / "pyproject.toml")
        rel = {m.path: str(import_path(m.path, dirs)) for m in config.modules}
        check_imports_from(
            tree, [r.removesuffix(".py").replace("/", ".") for r in rel.values()], env
        )
        (root / "work").mkdir()
        yield Scratch(root, tree, env, rel)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def load_map(path: Path = MAP) -> dict[str, Any] | None:
    """The committed coverage map, or None."""
    return json.loads(path.read_text()) if path.is_file() else None


def record_map(
    scratch: Scratch, config: Config, timeout_factor: float = 3.0, only: Sequence[str] = ()
) -> dict[str, Any]:
    """Record the coverage map on the unmutated copy and write it; RuntimeError if the suite fails there."""
    argv = pytest_command(
        Target("map", SUITE_ADAPTER, None),
        scratch.root / "map-report.json",
        scratch.root / "map-basetemp",
        "quick",
    )
    started = time.monotonic()
    covmap, output = covermap.record(
        scratch.tree,
        scratch.rel,
        scratch.root / "map",
        argv,
        scratch.env,
        4 * 3600,
        timeout_factor,
        only,
    )
    if covmap is None:
        raise RuntimeError(
            f"the unmutated copy does not pass the suite under coverage; no map recorded:\n{output}"
        )
    covmap["recorded_s"] = round(time.monotonic() - started)
    covermap.write(covmap, MAP)
    print(
        f"coverage map recorded in {covmap['recorded_s']} s: {len(covmap['tests'])} tests",
        flush=True,
    )
    return covmap


def refresh_records(
    scratch: Scratch, config: Config, modules: Sequence[ModuleConfig], results: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Mutant]]]:
    """Enumerate the mutants of ``modules`` in the copy and update (and write) their records where
    the source or the filter changed; the other modules' records are taken as they are.
    ({path: record} of every configured module, {path: {id: Mutant}} of ``modules``)."""
    records, tables = {}, {}
    for m in config.modules:
        record = load_record(m, results)
        if m in modules:
            mutants, dropped = enumerate_mutants(m, config, scratch.tree, scratch.root / "work")
            tables[m.path] = {x.id: x for x in mutants}
            sha = covermap.sha256(scratch.source(m.path))
            if record["source_sha256"] != sha or record["operator_filter"] != _filter_hash(config):
                refresh_table(record, mutants, dropped, sha, config)
                save_record(record, m, results)
        records[m.path] = record
    return records, tables


# --- run ----------------------------------------------------------------------------------------


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, so an applied mutation is reverted and nothing half-recorded."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def applied(scratch: Scratch, path: str, mutant: Mutant) -> Iterator[None]:
    """The copy with ``mutant`` applied to module ``path`` (restored afterwards)."""
    from cosmic_ray.mutating import use_mutation
    from cosmic_ray.plugins import get_operator

    with use_mutation(
        scratch.tree / scratch.rel[path], get_operator(mutant.operator)(), mutant.occurrence
    ) as (_, mutated):
        if mutated is None:
            raise RuntimeError(f"{mutant.id} no longer applies to {path}")
        yield


def judge(
    scratch: Scratch, oracle: Oracle, covmap: dict[str, Any], path: str, mutant: Mutant
) -> tuple[Judgement, int]:
    """Judge one mutant with its covering tests; (the judgement, how many tests cover it)."""
    tests = covermap.covering_tests(
        covmap, path, scratch.source(path), mutant.line, mutant.end_line
    )
    if not tests:
        return Judgement("not covered", 0.0, ""), 0
    with applied(scratch, path, mutant):
        return oracle.run("mutant", tests, timeout_for(covmap, tests)), len(tests)


def run(args: argparse.Namespace) -> int:
    """``run``: exit 0 when every sampled mutant of the selected modules is judged, 3 when the budget ran out."""
    config = load_config()
    modules = [config.module(p) for p in args.module] if args.module else list(config.modules)
    results = Path(args.results)
    started = time.monotonic()
    deadline = started + args.budget_minutes * 60
    commit = _head(args.source or "HEAD")
    try:
        with scratch_copy(config, args.source) as scratch, _terminate_as_interrupt():
            records, tables = refresh_records(scratch, config, modules, results)
            sample = current_sample(config, records)
            write_sample(sample)
            total = sum(len(s["ids"]) for s in sample["modules"].values())
            print(
                f"sample: {total} of {sum(s['population'] for s in sample['modules'].values())} in-scope mutants "
                f"(seed {sample['seed']})",
                flush=True,
            )
            if args.timeout_factor != 1:
                scratch.env["CKPTSPEC_MUTATION_TIMEOUT_FACTOR"] = str(args.timeout_factor)
            oracle = Oracle(scratch.tree, scratch.root / "work", scratch.env)
            covmap = load_map()
            reasons = covermap.stale(
                covmap, scratch.tree, {m.path: scratch.rel[m.path] for m in modules}
            )
            if covmap is not None and covmap.get("partial") and args.refresh_map:
                reasons.append("the map is partial")
            if reasons and not args.refresh_map:
                print(
                    "error: the coverage map is stale ("
                    + "; ".join(reasons)
                    + "): run with --refresh-map "
                    "(make mutation does) or `mutation.py map`",
                    file=sys.stderr,
                )
                return 2
            if reasons:
                print("recording the coverage map (" + "; ".join(reasons) + ")", flush=True)
                covmap = record_map(scratch, config, 3 * args.timeout_factor)
            elif covmap is not None and covmap.get("tree_sha256") == covermap.suite_hash(
                scratch.tree, "ckptspec"
            ):
                print(
                    "baseline: the map was recorded on this very tree, and its suite run passed",
                    flush=True,
                )
            else:
                print("baseline: the whole suite on the unmutated copy", flush=True)
                baseline = oracle.run("baseline", None, timeout_for(covmap, None))
                if baseline.verdict != "survived":
                    print(
                        f"error: the unmutated copy does not pass the suite; no mutant can be judged:\n"
                        f"{baseline.output}",
                        file=sys.stderr,
                    )
                    return 2
                print(f"baseline passed in {baseline.seconds:.0f} s", flush=True)
            assert covmap is not None
            finished, allowance = True, [args.max_mutants]
            for m in modules:
                done = _run_module(
                    m,
                    scratch,
                    oracle,
                    covmap,
                    records[m.path],
                    tables[m.path],
                    sample["modules"][m.path]["ids"],
                    deadline,
                    results,
                    commit,
                    allowance,
                )
                finished = finished and done
                if not done:
                    break
        print(
            f"wall time {time.monotonic() - started:.0f} s; "
            + (
                "every sampled mutant is judged"
                if finished
                else "budget reached: run again to continue"
            )
        )
        return 0 if finished else 3
    except KeyboardInterrupt:
        print("interrupted: the results so far are kept; run again to continue", file=sys.stderr)
        return 3


def _run_module(
    module: ModuleConfig,
    scratch: Scratch,
    oracle: Oracle,
    covmap: dict[str, Any],
    record: dict[str, Any],
    table: dict[str, Mutant],
    sampled: list[str],
    deadline: float,
    results: Path,
    commit: str,
    allowance: list[int | None],
) -> bool:
    """Judge the module's sampled mutants without a result until done, ``deadline`` or the
    allowance (``[count left]``, ``[None]``: no limit) is spent; finished?"""
    pending = [mid for mid in sampled if mid not in record["results"]]
    started, durations, done = time.monotonic(), [], True
    for n, mid in enumerate(pending, 1):
        estimate = sum(durations) / len(durations) if durations else 0.0
        if time.monotonic() + estimate > deadline or allowance[0] == 0:
            done = False
            break
        if allowance[0] is not None:
            allowance[0] -= 1
        mutant = table[mid]
        judgement, covering = judge(scratch, oracle, covmap, module.path, mutant)
        durations.append(judgement.seconds)
        if judgement.verdict == "error":  # left pending: the next run judges it again
            print(
                f"  [{n}/{len(pending)}] {mid}: suite error without a failed requirement, not recorded:\n"
                f"{judgement.output}",
                flush=True,
            )
            continue
        if covmap.get("partial") and judgement.verdict in ("survived", "not covered"):
            print(
                f"  [{n}/{len(pending)}] {mid} line {mutant.line}: {judgement.verdict} by the partial map's tests "
                f"({judgement.seconds:.0f} s), not recorded",
                flush=True,
            )
            continue
        row: dict[str, Any] = {
            "outcome": judgement.verdict,
            "seconds": round(judgement.seconds, 1),
            "covering_tests": covering,
            "tests_run": judgement.tests_run,
            "source_sha256": record["source_sha256"][:16],
            "commit": commit,
        }
        if covmap.get("partial"):
            row["map"] = "partial"
        if judgement.startup_s is not None:
            row["startup_s"] = judgement.startup_s
        if judgement.verdict == "killed":
            row["killed_by"], row["failed"] = judgement.killed_by, judgement.failed
        if judgement.verdict in ("survived", "not covered"):
            row["diff"] = mutant.diff
        record["results"][mid] = row
        save_record(record, module, results)
        print(
            f"  [{n}/{len(pending)}] {mid} {mutant.operator} line {mutant.line}: {judgement.verdict} "
            f"({judgement.seconds:.0f} s, {judgement.tests_run} of {covering} covering tests run)",
            flush=True,
        )
    record["runs"].append(
        {
            "mutants": len(durations),
            "seconds": round(time.monotonic() - started),
            "finished": done,
            "commit": commit,
        }
    )
    save_record(record, module, results)
    return done


def _head(rev: str = "HEAD") -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short=12", rev], cwd=REPO, capture_output=True, text=True
    )
    return out.stdout.strip()


def sample_command(args: argparse.Namespace) -> int:
    """``sample``: enumerate the modules' mutants and write the records and the sample (runs nothing)."""
    config = load_config()
    with scratch_copy(config, args.source) as scratch:
        records, _ = refresh_records(scratch, config, config.modules, RESULTS)
    sample = current_sample(config, records)
    write_sample(sample)
    for path, drawn in sample["modules"].items():
        print(f"{path}: {len(drawn['ids'])} of {drawn['population']} in-scope mutants sampled")
    return 0


def map_command(args: argparse.Namespace) -> int:
    """``map``: record the coverage map on the unmutated tree."""
    config = load_config()
    with scratch_copy(config, args.source) as scratch:
        record_map(scratch, config, args.timeout_factor, args.test)
    return 0


# --- ci -----------------------------------------------------------------------------------------


def touched_modules(
    config: Config,
    scratch: Scratch,
    covmap: dict[str, Any] | None,
    base: str | None,
    results: Path = RESULTS,
) -> tuple[list[ModuleConfig], str]:
    """The modules whose killed mutants ``ci`` re-judges, and why."""
    if covmap is not None and covmap["suite_sha256"] != covermap.suite_hash(scratch.tree):
        return list(config.modules), "the suite changed since the coverage map was recorded"
    if base is not None:
        changed = subprocess.run(
            ["git", "diff", "--name-only", base],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if any(p.startswith("conformance/") for p in changed):
            return list(config.modules), f"the suite changed since {base}"
        return [m for m in config.modules if m.path in changed], f"changed since {base}"
    return (
        [
            m
            for m in config.modules
            if load_record(m, results)["source_sha256"] != covermap_sha(scratch, m.path)
        ],
        "changed since their mutants were enumerated",
    )


def covermap_sha(scratch: Scratch, path: str) -> str:
    """The module's content hash in the copy."""
    return covermap.sha256(scratch.source(path))


def ci(args: argparse.Namespace) -> int:
    """``ci``: exit 0 when every re-judged mutant is still killed, 1 when one survives, 2 could not run."""
    config = load_config()
    started = time.monotonic()
    deadline = started + args.budget_minutes * 60
    with scratch_copy(config, None) as scratch:
        covmap = load_map()
        modules, why = touched_modules(config, scratch, covmap, args.base)
        if not modules:
            print(
                f"mutation-ci: no mutated module or suite file changed; nothing to run "
                f"({time.monotonic() - started:.0f} s)"
            )
            return 0
        sample = json.loads(SAMPLE.read_text())
        oracle = Oracle(scratch.tree, scratch.root / "work", scratch.env)
        fresh = covmap is not None
        candidates: list[tuple[ModuleConfig, Mutant, dict[str, Any]]] = []
        for m in modules:
            recorded = load_record(m)["results"]
            if not any(
                recorded.get(mid, {}).get("outcome") == "killed"
                for mid in sample["modules"][m.path]["ids"]
            ):
                continue  # nothing to re-judge: spare the enumeration
            table = {
                x.id: x
                for x in enumerate_mutants(m, config, scratch.tree, scratch.root / "work")[0]
            }
            fresh_module = (
                fresh
                and not covmap.get("partial")
                and not covermap.stale(covmap, scratch.tree, {m.path: scratch.rel[m.path]})
            )
            candidates += [
                (m, table[mid], recorded[mid] | {"fresh_map": fresh_module})
                for mid in sample["modules"][m.path]["ids"]
                if mid in table and recorded.get(mid, {}).get("outcome") == "killed"
            ]
        if not candidates:
            print(
                f"mutation-ci: {', '.join(m.path for m in modules)} ({why}): no killed sampled mutant to re-judge"
            )
            return 0
        offset = int(_head() or "0", 16) % len(
            candidates
        )  # each commit starts elsewhere in the list
        candidates = candidates[offset:] + candidates[:offset]
        print(
            f"mutation-ci: {', '.join(m.path for m in modules)} ({why}): {len(candidates)} killed sampled mutants; "
            f"re-judging what fits in {args.budget_minutes:g} min",
            flush=True,
        )
        weakened, judged, durations = [], 0, []
        for m, mutant, row in candidates:
            estimate = max(durations) if durations else 0.0
            if time.monotonic() + estimate > deadline:
                break
            verdict, seconds = _rejudge(scratch, oracle, covmap, m.path, mutant, row)
            durations.append(seconds)
            judged += 1
            print(f"  {mutant.id}: {verdict} ({seconds:.0f} s)", flush=True)
            if verdict == "survived":
                weakened.append(mutant.id)
        print(
            f"mutation-ci: {judged} of {len(candidates)} re-judged in {time.monotonic() - started:.0f} s; "
            + (f"now surviving: {', '.join(weakened)}" if weakened else "all still killed")
        )
        return 1 if weakened else 0


def _rejudge(
    scratch: Scratch,
    oracle: Oracle,
    covmap: dict[str, Any] | None,
    path: str,
    mutant: Mutant,
    row: dict[str, Any],
) -> tuple[str, float]:
    """Judge a previously killed mutant: the test that killed it, then (if it passes) the rest of
    its covering tests, or the whole suite when the map cannot say which."""
    started = time.monotonic()
    with applied(scratch, path, mutant):
        first = [row["killed_by"]] if row.get("killed_by") else []
        if first:
            result = oracle.run("ci", first, timeout_for(covmap, first))
            if result.verdict != "survived":
                return result.verdict, time.monotonic() - started
        if covmap is not None and row["fresh_map"]:
            rest = [
                t
                for t in covermap.covering_tests(
                    covmap, path, scratch.source(path), mutant.line, mutant.end_line
                )
                if t not in first
            ]
            result = (
                oracle.run("ci", rest, timeout_for(covmap, rest))
                if rest
                else Judgement("survived", 0.0, "")
            )
        else:
            result = oracle.run("ci", None, timeout_for(covmap, None))
        return result.verdict, time.monotonic() - started


# --- the report ---------------------------------------------------------------------------------


def load_triage(path: Path = TRIAGE) -> dict[str, tuple[str, str]]:
    """``triage.toml`` as {mutant id: (verdict, reason)}; ValueError naming a bad entry."""
    raw = tomllib.loads(path.read_text()) if path.is_file() else {}
    triage = {}
    for mid, entry in raw.get("mutant", {}).items():
        if entry.get("verdict") not in VERDICTS or not entry.get("reason"):
            raise ValueError(
                f"{path.name}: mutant {mid!r} needs a verdict ({' / '.join(VERDICTS)}) and a reason"
            )
        triage[mid] = (entry["verdict"], entry["reason"])
    return triage


@dataclass
class Tally:
    """The counts of one module's (or all modules') row of the report."""

    population: int = 0
    out_of_scope: int = 0  # outside the listed functions
    sampled: int = 0
    killed: int = 0
    survived: int = 0  # covered and survived
    not_covered: int = 0
    incompetent: int = 0
    pending: int = 0
    verdicts: dict[str, int] = field(default_factory=lambda: {v: 0 for v in VERDICTS})

    @property
    def untriaged(self) -> int:
        """Survivors (covered or not) without a triage entry."""
        return self.survived + self.not_covered - sum(self.verdicts.values())

    @property
    def judged(self) -> int:
        """The denominator of the score: killed, gaps and untriaged survivors."""
        return self.killed + self.verdicts["gap"] + self.untriaged

    def add(self, other: Tally) -> None:
        """Add ``other``'s counts to these."""
        for name in (
            "population",
            "out_of_scope",
            "sampled",
            "killed",
            "survived",
            "not_covered",
            "incompetent",
            "pending",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for v in VERDICTS:
            self.verdicts[v] += other.verdicts[v]

    def row(self, name: str) -> str:
        """The table row."""
        low, high = sampling.wilson(self.killed, self.judged)
        score = (
            f"{100 * self.killed / self.judged:.0f} % [{100 * low:.0f}, {100 * high:.0f}]"
            if self.judged
            else "-"
        )
        return (
            f"| {name} | {self.population} | {self.sampled} | {self.sampled - self.pending - self.not_covered - self.incompetent} "
            f"| {self.killed} | {self.survived} | {self.not_covered} | {self.verdicts['equivalent']} "
            f"| {self.verdicts['out of scope']} | {self.verdicts['gap']} | {self.untriaged} | {self.incompetent} "
            f"| {self.pending} | {score} |"
        )


def tally(
    record: dict[str, Any], sampled: list[str], triage: dict[str, tuple[str, str]]
) -> tuple[Tally, list[str]]:
    """The module's counts over its sampled mutants, and its survivors' ids."""
    t = Tally(
        population=sum(r["in_scope"] for r in record["mutants"].values()),
        out_of_scope=sum(not r["in_scope"] for r in record["mutants"].values()),
        sampled=len(sampled),
    )
    survivors = []
    for mid in sampled:
        outcome = record["results"].get(mid, {}).get("outcome", "pending")
        if outcome in ("survived", "not covered"):
            survivors.append(mid)
            if mid in triage:
                t.verdicts[triage[mid][0]] += 1
        attribute = {
            "killed": "killed",
            "survived": "survived",
            "not covered": "not_covered",
            "incompetent": "incompetent",
            "pending": "pending",
        }[outcome]
        setattr(t, attribute, getattr(t, attribute) + 1)
    return t, survivors


def render(
    config: Config,
    triage: dict[str, tuple[str, str]],
    sample: dict[str, Any],
    results: Path = RESULTS,
) -> str:
    """``docs/mutation.md`` from the records, the sample and the triage (deterministic: no clock, no paths)."""
    head = [
        "| Module | In scope | Sampled | Covered, run | Killed | Survived | Not covered | Equivalent | Out of scope "
        "| Gap | Untriaged | Incompetent | Pending | Score [95 % CI] |",
        "|" + "---|" * 14,
    ]
    total = Tally()
    survivors: list[tuple[ModuleConfig, str, dict[str, Any]]] = []
    dropped: dict[str, int] = {}
    runs, times, startups = [], [], []
    for m in config.modules:
        record = load_record(m, results)
        sampled = sample["modules"].get(m.path, {}).get("ids", [])
        t, alive = tally(record, sampled, triage)
        total.add(t)
        head.append(t.row(f"`{m.path}`"))
        survivors += [(m, mid, record["results"][mid]) for mid in alive]
        for op, n in record["filtered"].items():
            family = op.split("_")[0]
            dropped[family] = dropped.get(family, 0) + n
        runs.append(
            f"- `{m.path}`: "
            + (
                ", ".join(
                    f"{r['mutants']} mutants in {r['seconds']} s"
                    + ("" if r["finished"] else " (budget reached)")
                    for r in record["runs"]
                )
                or "not run"
            )
            + (f"; {t.out_of_scope} mutants outside the listed functions" if t.out_of_scope else "")
        )
        for mid in sampled:
            row = record["results"].get(mid, {})
            if row.get("outcome") in ("killed", "survived"):
                times.append(row["seconds"])
                if "startup_s" in row:
                    startups.append((row["seconds"], row["startup_s"]))
    head.append(total.row("**all**"))
    low, _ = sampling.wilson(total.killed, total.judged)
    lines = [HEADER.format(seed=sample["seed"], size=sample["size"]), *head, ""]
    if times:
        lines.append(
            f"Mutants run so far: {len(times)}, {sum(times) / len(times):.0f} s each on average"
            + (
                f" (the {len(startups)} timed in parts: {sum(t for t, _ in startups) / len(startups):.0f} s, "
                f"of which {sum(u for _, u in startups) / len(startups):.0f} s pytest's start-up and collection)"
                if startups
                else ""
            )
            + "; projected for the pending ones at that average: "
            f"{total.pending * sum(times) / len(times) / 60:.0f} min."
        )
        lines.append("")
    lines += [
        "Dropped by the operator filter (every module, before sampling): "
        + ", ".join(f"{family} {n}" for family, n in sorted(dropped.items()))
        + ".",
        "",
        "Runs recorded (wall time of `run` per module, each invocation):",
        "",
        *runs,
        "",
        "## Survivors",
        "",
    ]
    if not survivors:
        lines.append("None so far.")
    for m, mid, row in survivors:
        verdict, reason = triage.get(mid, ("untriaged", "not triaged yet"))
        how = (
            "no test executes its line"
            if row["outcome"] == "not covered"
            else f"its {row['covering_tests']} covering tests pass"
            if "covering_tests" in row
            else "the whole suite passes"
        )  # judged before the coverage map
        lines += [
            f"### `{mid}` ({verdict})",
            "",
            f"`{m.path}`, {how}: {reason}",
            "",
            "```diff",
            row["diff"],
            "```",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


HEADER = """# Mutation testing: the suite as oracle

<!-- generated by `python tools/mutation/mutation.py report` from tools/mutation/results/,
sample.json and triage.toml; do not edit by hand -->

`make mutation` (see `tools/mutation/mutation.py`) mutates the reference trainer's checkpoint and
resume path with [cosmic-ray](https://cosmic-ray.readthedocs.io/) 8.7 and runs the conformance
suite against each mutant of a seeded, stratified sample (seed {seed}, {size} mutants: per module a
share proportional to its in-scope mutants). Each mutant runs only the tests that execute its
line on the unmutated tree (`tools/mutation/coverage-map.json`, recorded with coverage.py in the
rank processes), cheapest first, quick profile, derandomized, stopping at the first failure.
**Killed**: the suite failed a requirement (a harness error without a failed requirement is no
verdict: the mutant stays pending); **survived**: its covering tests passed; **not covered**: no
test executes its line (a survivor, judged without a run); **incompetent**: the suite could not
run, not counted. A *partial* map (recorded for a few tests only) confirms kills but not
survivals, so with one only kills are recorded. Every survivor is triaged in `tools/mutation/triage.toml`: *equivalent* (no
observable behaviour changes), *out of scope* (not checkpoint/resume behaviour) or *gap* (the
suite should catch it). **Score** = killed / (killed + gap + untriaged), with its Wilson 95 %
interval; the population is the module's mutants after the operator filter of
`tools/mutation/modules.toml` and inside its listed functions.

Why cosmic-ray and not mutmut: the oracle is a multi-process suite whose rank processes are
started by torch's elastic launcher from a forkserver. cosmic-ray mutates the source file on disk
(here: a scratch copy of the tree, first on `PYTHONPATH`), so every process that imports the module
gets the mutant. mutmut 3 instead rewrites every function into a trampoline that picks the mutant
at run time from an environment variable and collects coverage through its own pytest plugin,
which the suite's rank processes and its `--pyargs` invocation do not go through.

Reproduce or continue: `make mutation` (`MUTATION_BUDGET=<minutes>`, default 90), or
`.venv/bin/python tools/mutation/mutation.py run --module reference_impl/rng.py --budget-minutes 30`;
then `.venv/bin/python tools/mutation/mutation.py report`. `make mutation-ci` re-judges the killed
sampled mutants of the modules a change touches within 5 minutes.

"""


def report(args: argparse.Namespace) -> int:
    """``report``: write ``docs/mutation.md`` (``--check``: exit 1 if it differs instead)."""
    config = load_config()
    sample = json.loads(SAMPLE.read_text())
    text = render(config, load_triage(), sample)
    if args.check:
        current = DOC.read_text() if DOC.is_file() else ""
        if current != text:
            print(
                f"{DOC.relative_to(REPO)} is out of date: run python tools/mutation/mutation.py report",
                file=sys.stderr,
            )
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; exit 0 ok, 1 report out of date or (``ci``) a killed mutant survives,
    2 could not run, 3 budget reached or interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="judge the pending sampled mutants within a time budget")
    p_run.add_argument(
        "--budget-minutes",
        type=float,
        default=90.0,
        help="stop starting mutants after this (default 90)",
    )
    p_run.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="PATH",
        help="only this module (repeatable)",
    )
    p_run.add_argument(
        "--source",
        default=None,
        metavar="REV",
        help="mutate this commit's tree, not the working tree",
    )
    p_run.add_argument(
        "--refresh-map", action="store_true", help="record the coverage map again if it is stale"
    )
    p_run.add_argument(
        "--max-mutants",
        type=int,
        default=None,
        metavar="N",
        help="judge at most N mutants (a slice)",
    )
    p_run.add_argument(
        "--timeout-factor",
        type=float,
        default=1.0,
        metavar="F",
        help="stretch the suite's phase deadlines by F (a loaded machine; default 1)",
    )
    p_run.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)
    p_map = sub.add_parser("map", help="record the coverage map on the unmutated tree")
    p_map.add_argument(
        "--source", default=None, metavar="REV", help="this commit's tree, not the working tree"
    )
    p_map.add_argument(
        "--test",
        action="append",
        default=[],
        metavar="ID",
        help="record only this test (repeatable; stable id module::name): a partial map",
    )
    p_map.add_argument(
        "--timeout-factor",
        type=float,
        default=3.0,
        metavar="F",
        help="stretch the suite's phase deadlines by F (coverage slows the ranks; default 3)",
    )
    p_sample = sub.add_parser(
        "sample", help="enumerate the mutants and draw the sample; run nothing"
    )
    p_sample.add_argument(
        "--source", default=None, metavar="REV", help="this commit's tree, not the working tree"
    )
    p_report = sub.add_parser("report", help="write docs/mutation.md from the results")
    p_report.add_argument(
        "--check", action="store_true", help="exit 1 if docs/mutation.md is out of date"
    )
    p_ci = sub.add_parser(
        "ci", help="re-judge the killed sampled mutants of the modules a change touches"
    )
    p_ci.add_argument(
        "--budget-minutes",
        type=float,
        default=5.0,
        help="stop starting mutants after this (default 5)",
    )
    p_ci.add_argument(
        "--base",
        default=None,
        metavar="REV",
        help="modules changed since REV (default: since recorded)",
    )
    args = parser.parse_args(argv)
    commands = {
        "run": run,
        "map": map_command,
        "sample": sample_command,
        "report": report,
        "ci": ci,
    }
    try:
        return commands[args.command](args)
    except (ValueError, RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
