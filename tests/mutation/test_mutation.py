"""The mutation runner's pieces that start no process: ids, the import-tree mapping, the report.

The report is rendered from a small session built here with cosmic-ray's own ``WorkDB`` (one
killed, two survived of which one is triaged, one filtered, one out of scope, one not run); the
committed ``docs/mutation.md`` must be what ``mutation.py report`` generates from the committed
results. Skipped where cosmic-ray (pyproject's ``mutation`` extra) is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("cosmic_ray")

import mutation  # noqa: E402
from ckptspec.requirements import BY_ID  # noqa: E402
from cosmic_ray.work_db import WorkDB, use_db  # noqa: E402
from cosmic_ray import work_item  # noqa: E402  (its TestOutcome would be collected as a test class)
from cosmic_ray.work_item import MutationSpec, WorkerOutcome, WorkItem, WorkResult  # noqa: E402

SOURCE = "def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x + 1\n"


def test_mutant_id_ignores_line_numbers_and_separates_duplicates() -> None:
    mutated = SOURCE.replace("return x + 1\n\n\ndef g", "return x - 1\n\n\ndef g")
    diff = mutation.mutant_diff(SOURCE, mutated, "m.py")
    shifted = mutation.mutant_diff("# header\n" + SOURCE, "# header\n" + mutated, "m.py")
    assert diff != shifted  # the hunk header moved...
    first = mutation.mutant_id("m", "core/ReplaceBinaryOperator_Add_Sub", "f", diff, set())
    assert first == mutation.mutant_id("m", "core/ReplaceBinaryOperator_Add_Sub", "f", shifted, set())  # ...the id did not
    assert first != mutation.mutant_id("m", "core/ReplaceBinaryOperator_Add_Sub", "g", diff, set())
    assert first != mutation.mutant_id("m", "core/NumberReplacer", "f", diff, set())
    base = mutation.mutant_id("m", "op", "f", diff, set())
    taken: set[str] = set()
    assert [mutation.mutant_id("m", "op", "f", diff, taken) for _ in range(3)] == [base, base + "-2", base + "-3"]


def test_import_tree_follows_pyproject_package_dirs() -> None:
    dirs = mutation.package_dirs(mutation.REPO / "pyproject.toml")
    assert mutation.import_path("reference_impl/rng.py", dirs) == "ckptspec/reference_impl/rng.py"
    assert mutation.import_path("spec/checkpointing/loader.py", dirs) == "ckptspec/checkpointing/loader.py"
    assert mutation.import_path("conformance/tests/__init__.py", dirs) == "ckptspec/conformance/tests/__init__.py"
    assert mutation.import_path("tests/mutation/mutation.py", dirs) is None


def test_config_names_existing_modules_and_requirements() -> None:
    config = mutation.load_config()
    for module in config.modules:
        assert (mutation.REPO / module.path).is_file(), module.path
        assert module.requirements and all(r in BY_ID for r in module.requirements), module.path


def _session(results: Path, module: mutation.ModuleConfig) -> None:
    """Six mutants of ``module``: killed, survived (triaged), survived, filtered, out of scope, not run."""
    outcomes = [WorkResult(worker_outcome=WorkerOutcome.NORMAL, test_outcome=work_item.TestOutcome.KILLED, output="rest: exit 1"),
                WorkResult(worker_outcome=WorkerOutcome.NORMAL, test_outcome=work_item.TestOutcome.SURVIVED),
                WorkResult(worker_outcome=WorkerOutcome.NORMAL, test_outcome=work_item.TestOutcome.SURVIVED),
                WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output="Filtered operator"),
                WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=mutation.NOT_IN_FUNCTIONS),
                None]
    results.mkdir()
    jobs = {}
    with use_db(str(mutation.db_path(module, results)), WorkDB.Mode.create) as db:
        for n, outcome in enumerate(outcomes):
            job = f"job{n}"
            db.add_work_item(WorkItem.single(job, MutationSpec("m.py", "core/NumberReplacer", n, (n + 1, 0), (n + 1, 1))))
            if outcome is not None:
                db.set_result(job, outcome)
            jobs[job] = {"id": f"m-{n}", "operator": "core/NumberReplacer", "line": n + 1, "definition": "f",
                         "diff": f"-    return {n}\n+    return {n + 1}", "filtered": n == 3}
    meta = {"module": module.path, "source_sha256": "0", "operator_filter": "0",
            "runs": [{"mutants": 3, "seconds": 90, "finished": False}], "jobs": jobs}
    mutation.meta_path(module, results).write_text(json.dumps(meta))


def test_report_counts_and_lists_every_survivor(tmp_path: Path) -> None:
    module = mutation.ModuleConfig("reference_impl/rng.py", ("RESUME-8",))
    results = tmp_path / "results"
    _session(results, module)
    page = mutation.render(mutation.Config((), (module,)), {"m-1": ("equivalent", "same bytes either way")}, results)
    row = next(line for line in page.splitlines() if line.startswith("| `reference_impl/rng.py`"))
    # generated 5 (6 minus 1 filtered), filtered 1, killed 1, survived 2, equivalent 1, out of scope 1 (by
    # functions), gap 0, untriaged 1, incompetent 0, not yet run 1, score killed / (killed + untriaged) = 50 %
    assert row.split(" | ")[2:] == ["5", "1", "1", "2", "1", "1", "0", "1", "0", "1", "50 % |"]
    assert "### `m-1` (equivalent)" in page and "same bytes either way" in page and "+    return 2" in page
    assert "### `m-2` (untriaged)" in page and "+    return 3" in page
    assert "m-0" not in page  # a killed mutant is counted, not listed
    assert "3 mutants in 90 s (budget reached)" in page


def test_triage_entries_need_a_known_verdict_and_a_reason(tmp_path: Path) -> None:
    bad = tmp_path / "triage.toml"
    bad.write_text('[mutant."m-1"]\nverdict = "harmless"\nreason = "x"\n')
    with pytest.raises(ValueError, match="m-1"):
        mutation.load_triage(bad)
    bad.write_text('[mutant."m-1"]\nverdict = "gap"\n')
    with pytest.raises(ValueError, match="needs a verdict"):
        mutation.load_triage(bad)


def test_committed_page_is_current() -> None:
    assert mutation.DOC.read_text() == mutation.render(mutation.load_config(), mutation.load_triage())
