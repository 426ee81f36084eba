"""Automatic mutation testing of the reference trainer's checkpoint/resume path, the suite as oracle.

Usage::

    python tests/mutation/mutation.py run [--budget-minutes M] [--module PATH ...] [--source REV] [--init-only]
    python tests/mutation/mutation.py report [--check]

``run`` copies the working tree (tracked and untracked, non-ignored files; ``--source REV``: that
commit instead) into a scratch directory laid out as the installed ``ckptspec`` package, puts it
first on ``PYTHONPATH`` of every suite run, and mutates only that copy: the repository is never
written to, except for the result files under ``tests/mutation/results/``. Per module of
``modules.toml`` the mutants are cosmic-ray work items in a cosmic-ray session database
(``results/<slug>.sqlite``: ``cosmic-ray init``, then ``cr-filter-operators``); ``run`` executes
the pending ones, so an interrupted or budget-limited run is continued by the next. A module whose
source or operator filter changed gets a fresh session (old results no longer describe it).

Oracle per mutant (fast form): the conformance suite against the reference adapter, quick
profile, derandomized, ``-x``; first only the tests of the module's requirements, then, if those
pass, the rest of the suite. Killed: a stage exits 1 and its report marks a requirement ``fail``,
or a stage runs past the per-stage timeout; survived: both stages pass; a stage that exits 1
with no requirement ``fail`` (only harness errors) is no verdict, and the mutant stays pending; incompetent (not counted): the suite could not judge it
(any other exit status: a usage error such as an adapter that no longer imports, an internal
error). Before any mutant, the unmutated copy must pass the whole suite (the baseline), else
``run`` stops with exit status 2.

``report`` writes ``docs/mutation.md`` from the result files and the hand-edited
``triage.toml`` (keyed by :func:`mutant_id`); ``--check`` exits 1 if the page is out of date.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIG = HERE / "modules.toml"
TRIAGE = HERE / "triage.toml"
RESULTS = HERE / "results"
DOC = REPO / "docs" / "mutation.md"
SUITE_ADAPTER = "ckptspec.reference_impl.adapter:ReferenceAdapter"
MIN_STAGE_TIMEOUT_S = 300.0
VERDICTS = ("equivalent", "out of scope", "gap")
NOT_IN_FUNCTIONS = "out of scope: not inside the functions listed in modules.toml"

sys.path.insert(0, str(HERE.parent / "mutants"))
from catch_matrix import Target, pytest_command, suite_env  # noqa: E402  (tests/mutants/catch_matrix.py)


@dataclass(frozen=True)
class ModuleConfig:
    """One ``[[module]]`` table of ``modules.toml``."""

    path: str
    requirements: tuple[str, ...]
    functions: Optional[frozenset[str]] = None

    @property
    def slug(self) -> str:
        """The file-name stem of this module's result files, e.g. ``reference_impl-rng``."""
        return self.path.removesuffix(".py").replace("/", "-")


@dataclass(frozen=True)
class Config:
    """``modules.toml``: the operator filter and the modules, in run order."""

    exclude_operators: tuple[str, ...]
    modules: tuple[ModuleConfig, ...]

    def module(self, path: str) -> ModuleConfig:
        """The module configured for repository path ``path``; ValueError naming the known ones otherwise."""
        for m in self.modules:
            if m.path == path:
                return m
        raise ValueError(f"{path!r} is not a module of {CONFIG.name} (known: {', '.join(m.path for m in self.modules)})")


def load_config(path: Path = CONFIG) -> Config:
    """Parse ``modules.toml``."""
    raw = tomllib.loads(path.read_text())
    modules = tuple(ModuleConfig(m["path"], tuple(m["requirements"]),
                                 frozenset(m["functions"]) if "functions" in m else None) for m in raw["module"])
    return Config(tuple(raw["operators"]["exclude"]), modules)


def package_dirs(pyproject: Path) -> dict[str, str]:
    """pyproject's ``package-dir`` as {repository folder: folder in the import tree}, longest first."""
    mapping = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-dir"]
    pairs = {folder.rstrip("/"): package.replace(".", "/") for package, folder in mapping.items()}
    return dict(sorted(pairs.items(), key=lambda kv: -len(kv[0])))


def import_path(repo_path: str, dirs: dict[str, str]) -> Optional[str]:
    """Where repository file ``repo_path`` lives in the import tree (None: not part of a package)."""
    for folder, package in dirs.items():
        if repo_path.startswith(folder + "/"):
            return package + repo_path[len(folder):]
    return None


# --- stable mutant ids --------------------------------------------------------------------------

def mutant_diff(original: str, mutated: str, repo_path: str) -> str:
    """The unified diff (one line of context) of a mutant, headed by the repository path."""
    lines = difflib.unified_diff(original.split("\n"), mutated.split("\n"), f"a/{repo_path}", f"b/{repo_path}",
                                 n=1, lineterm="")
    return "\n".join(lines)


def mutant_id(slug: str, operator: str, definition: Optional[str], diff: str, taken: set[str]) -> str:
    """A mutant's id: stable while the mutated lines, their function and the operator stay the same.

    Hashes the operator, the enclosing definition and the diff's changed lines (not their line
    numbers), so edits elsewhere in the module keep every id; identical mutants of one module get
    ``-2``, ``-3``... in source order. ``taken`` is updated.
    """
    changed = [line for line in diff.split("\n") if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    digest = hashlib.sha256("\n".join([operator, definition or "", *changed]).encode()).hexdigest()[:10]
    base = f"{slug}-{digest}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    taken.add(candidate)
    return candidate


# --- the scratch tree ---------------------------------------------------------------------------

def copy_tree(dest: Path, source: Optional[str] = None) -> Path:
    """Copy the project into ``dest`` as an import tree (``dest/ckptspec/...``) and return ``dest``.

    ``source`` None: the working tree's tracked and untracked non-ignored files, as they are now;
    otherwise the tree of that commit (``git archive``). Only files under a ``package-dir`` folder
    are copied (the tests and docs are not imported by the suite).
    """
    dirs = package_dirs(REPO / "pyproject.toml")
    if source is None:
        listing = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO,
                                 capture_output=True, check=True).stdout.decode().split("\0")
        for rel in filter(None, listing):
            target = import_path(rel, dirs)
            if target is not None and (REPO / rel).is_file():
                (dest / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, dest / target)
        return dest
    archive = subprocess.run(["git", "archive", "--format=tar", source], cwd=REPO, capture_output=True, check=True)
    with tempfile.TemporaryDirectory() as unpack:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(unpack, filter="data")
        for path in Path(unpack).rglob("*"):
            target = import_path(path.relative_to(unpack).as_posix(), dirs)
            if target is not None and path.is_file():
                (dest / target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest / target)
    return dest


def check_imports_from(tree: Path, modules: Iterable[str], env: dict[str, str]) -> None:
    """Raise RuntimeError unless a fresh interpreter with ``env`` imports every module from ``tree``."""
    code = "import importlib, sys\nfor m in sys.argv[1:]: print(importlib.import_module(m).__file__)"
    out = subprocess.run([sys.executable, "-c", code, *modules], env=env, capture_output=True, text=True, timeout=300)
    files = out.stdout.split()
    if out.returncode != 0 or any(not Path(f).resolve().is_relative_to(tree.resolve()) for f in files):
        raise RuntimeError(f"the mutated tree is not what the suite imports: {out.stdout}{out.stderr}")


# --- the oracle ---------------------------------------------------------------------------------

@dataclass
class StageResult:
    """One pytest run of the oracle."""

    returncode: Optional[int]  # None: timed out
    seconds: float
    output: str
    failed: list[str] = field(default_factory=list)  # requirement IDs the report marks ``fail``


class Oracle:
    """Runs the conformance suite on the scratch tree (see the module docstring for the verdicts)."""

    def __init__(self, tree: Path, workdir: Path, env: dict[str, str]) -> None:
        self.tree, self.workdir, self.env = tree, workdir, env
        self.stage_timeout_s = MIN_STAGE_TIMEOUT_S
        self._selected: dict[tuple[str, ...], list[str]] = {}

    def _run(self, argv: list[str], where: Path, timeout_s: float) -> tuple[Optional[int], str, float]:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=where, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout_s)
            code: Optional[int] = proc.returncode
        except subprocess.TimeoutExpired:
            code, output = None, f"timed out after {timeout_s:.0f} s"
        finally:
            if proc.poll() is None or code is None:  # the suite's rank processes are in the same session
                _kill_group(proc)
                proc.communicate()
        return code, output, time.perf_counter() - started

    def stage(self, name: str, select: Optional[tuple[str, ...]], deselect: Sequence[str] = ()) -> StageResult:
        """One suite run: ``select`` None runs everything but ``deselect`` (node ids)."""
        where = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        report = where / "report.json"
        argv = pytest_command(Target(name, SUITE_ADAPTER, select), report, where / "basetemp", "quick") + ["-x"]
        if select is not None:
            argv.append("--ckptspec-stop-on-requirement-failure")
        argv += [f"--deselect={node}" for node in deselect]
        code, output, seconds = self._run(argv, where, self.stage_timeout_s)
        failed = []
        if report.is_file():
            failed = [row["id"] for row in json.loads(report.read_text())["requirements"] if row["outcome"] == "fail"]
        shutil.rmtree(where, ignore_errors=True)
        return StageResult(code, seconds, output[-3000:], failed)

    def selected_nodes(self, select: tuple[str, ...]) -> list[str]:
        """The node ids the first stage of ``select`` runs (collected once), for the second stage to skip."""
        if select not in self._selected:
            where = Path(tempfile.mkdtemp(prefix="collect-", dir=self.workdir))
            argv = pytest_command(Target("collect", SUITE_ADAPTER, select), where / "r.json", where / "bt", "quick")
            code, output, _ = self._run(argv + ["--collect-only", "-q"], where, self.stage_timeout_s)
            if code != 0:
                raise RuntimeError(f"cannot collect the tests of {', '.join(select)}:\n{output[-3000:]}")
            self._selected[select] = [line for line in output.splitlines() if "::" in line and " " not in line]
            shutil.rmtree(where, ignore_errors=True)
        return self._selected[select]

    def judge(self, requirements: tuple[str, ...]) -> tuple[str, str]:
        """(``killed`` | ``survived`` | ``incompetent`` | ``error``, a summary) for the code now in the tree.

        ``error``: a test failed but the report marks no requirement ``fail`` (only ``error``: the
        harness, not a check, gave up, e.g. a rendezvous timeout under load); not a verdict.
        """
        stages = [("selected", requirements, ())] if requirements else []
        stages.append(("rest", None, self.selected_nodes(requirements) if requirements else ()))
        summary = []
        for name, select, deselect in stages:
            result = self.stage(name, select, deselect)
            summary.append(f"{name}: exit {result.returncode} in {result.seconds:.0f} s")
            if result.returncode is None:
                return "killed", "; ".join(summary) + " (timeout)"
            if result.returncode == 1 and result.failed:
                return "killed", "; ".join(summary) + f"; failed: {', '.join(result.failed)}\n{result.output}"
            if result.returncode == 1:
                return "error", "; ".join(summary) + f"; no requirement failed\n{result.output}"
            if result.returncode != 0:
                return "incompetent", "; ".join(summary) + f"\n{result.output}"
        return "survived", "; ".join(summary)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- sessions -----------------------------------------------------------------------------------

def _config_hash(config: Config) -> str:
    return hashlib.sha256(json.dumps(config.exclude_operators).encode()).hexdigest()[:16]


def meta_path(module: ModuleConfig, results: Path = RESULTS) -> Path:
    """The module's metadata file: source hash, operator filter hash, runs, and per job its id and diff."""
    return results / f"{module.slug}.json"


def db_path(module: ModuleConfig, results: Path = RESULTS) -> Path:
    """The module's cosmic-ray session database."""
    return results / f"{module.slug}.sqlite"


def init_session(module: ModuleConfig, config: Config, tree: Path, results: Path) -> dict[str, Any]:
    """Create (or keep) the module's session; return its metadata.

    A session is kept iff its source hash and operator-filter hash match; otherwise ``cosmic-ray
    init`` and ``cr-filter-operators`` make a new one, and mutants outside ``functions`` are
    recorded as skipped.
    """
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    rel = import_path(module.path, package_dirs(REPO / "pyproject.toml"))
    assert rel is not None, module.path
    source = (tree / rel).read_text()
    source_hash = hashlib.sha256(source.encode()).hexdigest()
    meta_file, db_file = meta_path(module, results), db_path(module, results)
    if meta_file.is_file() and db_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta["source_sha256"] == source_hash and meta["operator_filter"] == _config_hash(config):
            return meta
    results.mkdir(parents=True, exist_ok=True)
    db_file.unlink(missing_ok=True)
    cr_config = tree.parent / f"{module.slug}.toml"
    cr_config.write_text(_cosmic_ray_config(rel, config))
    bindir = Path(sys.executable).parent
    for argv in ([str(bindir / "cosmic-ray"), "init", str(cr_config), str(db_file)],
                 [str(bindir / "cr-filter-operators"), str(db_file), str(cr_config)]):
        subprocess.run(argv, cwd=tree, check=True, capture_output=True)
    jobs: dict[str, Any] = {}
    taken: set[str] = set()
    with use_db(str(db_file), WorkDB.Mode.open) as db:
        done = {job for job, _ in db.results}
        items = sorted(db.work_items, key=lambda w: (w.mutations[0].operator_name, w.mutations[0].occurrence))
        for item in items:
            spec = item.mutations[0]
            mutated = mutate_code(source, get_operator(spec.operator_name)(**spec.operator_args), spec.occurrence)
            diff = mutant_diff(source, mutated, module.path) if mutated is not None else ""
            jobs[item.job_id] = {"id": mutant_id(module.slug, spec.operator_name, spec.definition_name, diff, taken),
                                 "operator": spec.operator_name, "line": spec.start_pos[0],
                                 "definition": spec.definition_name, "diff": diff, "filtered": item.job_id in done}
            if item.job_id not in done and module.functions is not None and spec.definition_name not in module.functions:
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=NOT_IN_FUNCTIONS))
    meta = {"module": module.path, "source_sha256": source_hash, "operator_filter": _config_hash(config),
            "runs": [], "jobs": jobs}
    meta_file.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def _cosmic_ray_config(rel: str, config: Config) -> str:
    excludes = ", ".join(json.dumps(e) for e in config.exclude_operators)
    return ("[cosmic-ray]\n"
            f'module-path = "{rel}"\ntimeout = {MIN_STAGE_TIMEOUT_S}\nexcluded-modules = []\n'
            '# `run` executes the work items itself (budget, two stages, incompetent verdicts)\n'
            'test-command = "false"\n\n[cosmic-ray.distributor]\nname = "local"\n\n'
            f"[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excludes}]\n")


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


def execute(module: ModuleConfig, tree: Path, oracle: Oracle, deadline: float, results: Path) -> tuple[int, bool]:
    """Run the module's pending mutants until done or ``deadline`` (monotonic); (count run, finished?).

    A mutant is started only if the mean time of the ones before fits before the deadline.
    """
    from cosmic_ray.mutating import use_mutation
    from cosmic_ray.plugins import get_operator
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    meta = json.loads(meta_path(module, results).read_text())
    durations: list[float] = []
    with use_db(str(db_path(module, results)), WorkDB.Mode.open) as db:
        pending = sorted(db.pending_work_items, key=lambda w: meta["jobs"][w.job_id]["id"])
        for n, item in enumerate(pending, 1):
            estimate = sum(durations) / len(durations) if durations else 0.0
            if time.monotonic() + estimate > deadline:
                return len(durations), False
            spec = item.mutations[0]
            started = time.monotonic()
            with use_mutation(tree / spec.module_path, get_operator(spec.operator_name)(**spec.operator_args),
                              spec.occurrence) as (_, mutated):
                if mutated is None:
                    db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.NO_TEST))
                    continue
                verdict, summary = oracle.judge(module.requirements)
            durations.append(time.monotonic() - started)
            if verdict == "error":  # left pending: the next run judges it again
                print(f"  [{n}/{len(pending)}] {meta['jobs'][item.job_id]['id']}: suite error without a failed "
                      f"requirement, not recorded:\n{summary}", flush=True)
                continue
            db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.NORMAL, output=summary,
                                                  test_outcome=verdict, diff=meta["jobs"][item.job_id]["diff"]))
            print(f"  [{n}/{len(pending)}] {meta['jobs'][item.job_id]['id']} {spec.operator_name} "
                  f"line {spec.start_pos[0]}: {verdict} ({durations[-1]:.0f} s)", flush=True)
    return len(durations), True


def run(args: argparse.Namespace) -> int:
    """``run``: see the module docstring; exit 0 when every selected module is finished, 3 when the budget ran out."""
    config = load_config()
    modules = [config.module(p) for p in args.module] if args.module else list(config.modules)
    results = Path(args.results)
    started = time.monotonic()
    deadline = started + args.budget_minutes * 60
    scratch = Path(tempfile.mkdtemp(prefix="ckptspec-mutation-"))
    try:
        tree = copy_tree(scratch / "tree", args.source)
        env = suite_env()
        env["PYTHONPATH"] = os.pathsep.join([str(tree), env["PYTHONPATH"]])
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant of the same size and second must not reuse a .pyc
        dirs = package_dirs(REPO / "pyproject.toml")
        dotted = [str(import_path(m.path, dirs)).removesuffix(".py").replace("/", ".") for m in modules]
        check_imports_from(tree, dotted, env)
        (scratch / "work").mkdir()
        oracle = Oracle(tree, scratch / "work", env)
        with _terminate_as_interrupt():
            _init_all(modules, config, tree, results)
            if args.init_only:
                return 0
            print("baseline: the whole suite on the unmutated copy", flush=True)
            baseline = oracle.stage("baseline", None)
            if baseline.returncode != 0:
                print(f"error: the unmutated copy does not pass the suite (exit {baseline.returncode}); "
                      f"no mutant can be judged:\n{baseline.output}", file=sys.stderr)
                return 2
            oracle.stage_timeout_s = max(MIN_STAGE_TIMEOUT_S, 3 * baseline.seconds)
            print(f"baseline passed in {baseline.seconds:.0f} s; per-stage timeout {oracle.stage_timeout_s:.0f} s",
                  flush=True)
            finished = True
            for m in modules:
                module_started = time.monotonic()
                count, done = execute(m, tree, oracle, deadline, results)
                _record_run(m, results, count, time.monotonic() - module_started, done)
                finished = finished and done
                if not done:
                    break
        print(f"wall time {time.monotonic() - started:.0f} s; "
              + ("every selected module is finished" if finished else "budget reached: run again to continue"))
        return 0 if finished else 3
    except KeyboardInterrupt:
        print("interrupted: the results so far are kept; run again to continue", file=sys.stderr)
        return 3
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _init_all(modules: Sequence[ModuleConfig], config: Config, tree: Path, results: Path) -> None:
    for m in modules:
        meta = init_session(m, config, tree, results)
        jobs = meta["jobs"].values()
        print(f"{m.path}: {len(meta['jobs'])} mutants, {sum(j['filtered'] for j in jobs)} removed by the operator "
              "filter", flush=True)


def _record_run(module: ModuleConfig, results: Path, count: int, seconds: float, finished: bool) -> None:
    meta_file = meta_path(module, results)
    meta = json.loads(meta_file.read_text())
    meta["runs"].append({"mutants": count, "seconds": round(seconds), "finished": finished})
    meta_file.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


# --- the report ---------------------------------------------------------------------------------

@dataclass
class Row:
    """One mutant as the report shows it."""

    id: str
    operator: str
    line: int
    diff: str
    status: str  # killed | survived | incompetent | filtered | out of scope | not run
    output: str = ""


def module_rows(module: ModuleConfig, results: Path = RESULTS) -> list[Row]:
    """Every mutant of ``module`` with its status, by id (empty if the module has no session yet)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome

    if not meta_path(module, results).is_file():
        return []
    meta = json.loads(meta_path(module, results).read_text())
    with use_db(str(db_path(module, results)), WorkDB.Mode.open) as db:
        outcomes = dict(db.results)
    rows = []
    for job, info in meta["jobs"].items():
        result = outcomes.get(job)
        if result is None:
            status = "not run"
        elif result.worker_outcome == WorkerOutcome.SKIPPED:
            status = "out of scope" if result.output == NOT_IN_FUNCTIONS else "filtered"
        elif result.worker_outcome == WorkerOutcome.NO_TEST:
            status = "incompetent"
        else:
            status = str(result.test_outcome.value if result.test_outcome else "incompetent")
        rows.append(Row(info["id"], info["operator"], info["line"], info["diff"], status,
                        (result.output or "") if result else ""))
    return sorted(rows, key=lambda r: r.id)


def load_triage(path: Path = TRIAGE) -> dict[str, tuple[str, str]]:
    """``triage.toml`` as {mutant id: (verdict, reason)}; ValueError naming a bad entry."""
    raw = tomllib.loads(path.read_text()) if path.is_file() else {}
    triage = {}
    for mid, entry in raw.get("mutant", {}).items():
        if entry.get("verdict") not in VERDICTS or not entry.get("reason"):
            raise ValueError(f"{path.name}: mutant {mid!r} needs a verdict ({' / '.join(VERDICTS)}) and a reason")
        triage[mid] = (entry["verdict"], entry["reason"])
    return triage


def render(config: Config, triage: dict[str, tuple[str, str]], results: Path = RESULTS) -> str:
    """``docs/mutation.md`` from the result files and the triage (deterministic: no clock, no paths)."""
    head = ["| Module | Requirements | Generated | Filtered out | Killed | Survived | Equivalent | Out of scope "
            "| Gap | Untriaged | Incompetent | Not yet run | Score |", "|" + "---|" * 13]
    survivors: list[tuple[ModuleConfig, Row]] = []
    runs = []
    for m in config.modules:
        rows = module_rows(m, results)
        count = {s: sum(r.status == s for r in rows) for s in ("killed", "survived", "incompetent", "filtered",
                                                                  "out of scope", "not run")}
        alive = [r for r in rows if r.status == "survived"]
        survivors += [(m, r) for r in alive]
        verdict = {v: sum(triage.get(r.id, ("",))[0] == v for r in alive) for v in VERDICTS}
        untriaged = len(alive) - sum(verdict.values())
        judged = count["killed"] + verdict["gap"] + untriaged
        score = f"{100 * count['killed'] / judged:.0f} %" if judged else "-"
        generated = len(rows) - count["filtered"]
        head.append(f"| `{m.path}` | {', '.join(m.requirements)} | {generated if rows else '-'} | {count['filtered']} "
                    f"| {count['killed']} | {len(alive)} | {verdict['equivalent']} "
                    f"| {verdict['out of scope'] + count['out of scope']} | {verdict['gap']} | {untriaged} "
                    f"| {count['incompetent']} | {count['not run'] if rows else 'no session'} | {score} |")
        if rows:
            meta = json.loads(meta_path(m, results).read_text())
            runs.append(f"- `{m.path}`: " + ", ".join(f"{r['mutants']} mutants in {r['seconds']} s"
                                                      + ("" if r["finished"] else " (budget reached)")
                                                      for r in meta["runs"]) if meta["runs"] else f"- `{m.path}`: not run")
    lines = [HEADER, *head, "", "Runs recorded (wall time of `run` per module, each invocation):", "", *runs, "",
             "## Survivors", ""]
    if not survivors:
        lines.append("None so far.")
    for m, r in survivors:
        verdict, reason = triage.get(r.id, ("untriaged", "not triaged yet"))
        lines += [f"### `{r.id}` ({verdict})", "", f"`{m.path}` line {r.line}, `{r.operator}`: {reason}", "",
                  "```diff", r.diff, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


HEADER = """# Mutation testing: the suite as oracle

<!-- generated by `python tests/mutation/mutation.py report` from tests/mutation/results/ and
tests/mutation/triage.toml; do not edit by hand -->

`make mutation` (see `tests/mutation/mutation.py`) mutates the reference trainer's checkpoint and
resume path with [cosmic-ray](https://cosmic-ray.readthedocs.io/) 8.7 and runs the conformance
suite against each mutant: the tests of the module's requirements first, then the rest (quick
profile, derandomized, stop at the first failure). **Killed**: the suite failed a requirement (a harness
error without a failed requirement is no verdict: the mutant stays pending); **survived**: it
passed; **incompetent**: the suite could not run (e.g. the adapter no longer imports), not
counted; **filtered out**: removed by the operator filter of `tests/mutation/modules.toml`;
**out of scope**: outside the module's listed functions, or triaged so. Every survivor is triaged
in `tests/mutation/triage.toml`: *equivalent* (no observable behaviour changes), *out of scope*
(not checkpoint/resume behaviour) or *gap* (the suite should catch it). **Score** = killed /
(killed + gap + untriaged).

Why cosmic-ray and not mutmut: the oracle is a multi-process suite whose rank processes are
started by torch's elastic launcher from a forkserver. cosmic-ray mutates the source file on disk
(here: a scratch copy of the tree, first on `PYTHONPATH`), so every process that imports the module
gets the mutant, and it keeps its work items and results in a sqlite session that a later run
continues. mutmut 3 instead rewrites every function into a trampoline that picks the mutant at
run time from an environment variable and collects coverage through its own pytest plugin, which
the suite's rank processes and its `--pyargs` invocation do not go through.

Why the runner drives cosmic-ray's session instead of `cosmic-ray exec`: `exec` runs one test
command with a fixed timeout and counts every non-zero exit as killed; the runner needs a time
budget that stops between mutants, the two-stage fast form per module, and "the suite could not
run" kept apart from "the suite failed".

Reproduce or continue: `make mutation` (`MUTATION_BUDGET=<minutes>`, default 35), or
`.venv/bin/python tests/mutation/mutation.py run --module reference_impl/rng.py --budget-minutes 30`;
then `.venv/bin/python tests/mutation/mutation.py report`.

"""


def report(args: argparse.Namespace) -> int:
    """``report``: write ``docs/mutation.md`` (``--check``: exit 1 if it differs instead)."""
    text = render(load_config(), load_triage())
    if args.check:
        current = DOC.read_text() if DOC.is_file() else ""
        if current != text:
            print(f"{DOC.relative_to(REPO)} is out of date: run python tests/mutation/mutation.py report",
                  file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point; exit 0 ok, 1 report out of date, 2 could not run, 3 budget reached or interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run pending mutants within a time budget")
    p_run.add_argument("--budget-minutes", type=float, default=35.0, help="stop starting mutants after this (default 35)")
    p_run.add_argument("--module", action="append", default=[], metavar="PATH", help="only this module (repeatable)")
    p_run.add_argument("--source", default=None, metavar="REV", help="mutate this commit's tree, not the working tree")
    p_run.add_argument("--init-only", action="store_true",
                       help="create or refresh the sessions (mutant counts in the report), run nothing")
    p_run.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)
    p_report = sub.add_parser("report", help="write docs/mutation.md from the results")
    p_report.add_argument("--check", action="store_true", help="exit 1 if docs/mutation.md is out of date")
    args = parser.parse_args(argv)
    try:
        return run(args) if args.command == "run" else report(args)
    except (ValueError, RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
