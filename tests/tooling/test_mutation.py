"""The mutation runner's pieces that start no process (tools/mutation/): ids, the import-tree
mapping, the sample and its interval, the coverage map's staleness and test selection, the
report; and that the committed sample and ``docs/mutation.md`` are what the runner generates
from the committed records. Skipped where cosmic-ray (pyproject's ``mutation`` extra) is not installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("cosmic_ray")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "mutation"))

import covermap  # noqa: E402
import mutation  # noqa: E402
import sampling  # noqa: E402

from ckptspec.requirements import BY_ID  # noqa: E402

SOURCE = "def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x + 1\n"


def test_mutant_id_ignores_line_numbers_and_separates_duplicates() -> None:
    mutated = SOURCE.replace("return x + 1\n\n\ndef g", "return x - 1\n\n\ndef g")
    diff = mutation.mutant_diff(SOURCE, mutated, "m.py")
    shifted = mutation.mutant_diff("# header\n" + SOURCE, "# header\n" + mutated, "m.py")
    assert diff != shifted  # the hunk header moved...
    first = mutation.mutant_id("m", "core/ReplaceBinaryOperator_Add_Sub", "f", diff, set())
    assert first == mutation.mutant_id(
        "m", "core/ReplaceBinaryOperator_Add_Sub", "f", shifted, set()
    )  # ...the id did not
    assert first != mutation.mutant_id("m", "core/ReplaceBinaryOperator_Add_Sub", "g", diff, set())
    assert first != mutation.mutant_id("m", "core/NumberReplacer", "f", diff, set())
    base = mutation.mutant_id("m", "op", "f", diff, set())
    taken: set[str] = set()
    assert [mutation.mutant_id("m", "op", "f", diff, taken) for _ in range(3)] == [
        base,
        base + "-2",
        base + "-3",
    ]


def test_import_tree_follows_pyproject_package_dirs() -> None:
    dirs = mutation.package_dirs(mutation.REPO / "pyproject.toml")
    assert mutation.import_path("reference_impl/rng.py", dirs) == "ckptspec/reference_impl/rng.py"
    assert (
        mutation.import_path("checkpointing/loader.py", dirs) == "ckptspec/checkpointing/loader.py"
    )
    assert (
        mutation.import_path("conformance/tests/__init__.py", dirs)
        == "ckptspec/conformance/tests/__init__.py"
    )
    assert mutation.import_path("tools/mutation/mutation.py", dirs) is None


def test_config_names_existing_modules_and_requirements() -> None:
    config = mutation.load_config()
    assert len(config.modules) == 7 and config.size >= 150
    for module in config.modules:
        assert (mutation.REPO / module.path).is_file(), module.path
        assert module.requirements and all(r in BY_ID for r in module.requirements), module.path


def test_allocation_is_proportional_with_one_from_each_stratum() -> None:
    counts = sampling.allocate({"a": 300, "b": 100, "c": 2, "d": 0}, 40)
    assert sum(counts.values()) == 40 and counts["d"] == 0 and counts["c"] == 1
    assert (
        counts["a"] == 29 and counts["b"] == 10
    )  # quotas 29.85 and 9.95: b has the larger remainder
    assert sampling.allocate({"a": 3, "b": 4}, 150) == {"a": 3, "b": 4}


def test_choice_is_seeded_and_keeps_mutants_that_stay() -> None:
    ids = [f"m-{n}" for n in range(200)]
    drawn = sampling.choose(ids, 20, seed=7)
    assert drawn == sampling.choose(reversed(ids), 20, seed=7) and len(drawn) == 20
    assert drawn != sampling.choose(ids, 20, seed=8)
    edited = [i for i in ids if i not in drawn[:5]] + [
        "new-1",
        "new-2",
    ]  # five vanished, two appeared
    redrawn = sampling.choose(edited, 20, seed=7)
    assert set(drawn[5:]) <= set(redrawn)


def test_wilson_interval() -> None:
    low, high = sampling.wilson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = sampling.wilson(10, 10)
    assert round(high, 9) == 1.0 and round(low, 4) == 0.7225
    assert sampling.wilson(0, 0) == (0.0, 1.0)
    low, high = sampling.wilson(135, 150)
    assert 0.84 < low < 0.85 and 0.93 < high < 0.95


def test_statement_lines_span_multi_line_statements_and_headers() -> None:
    source = "x = f(\n    1,\n)\nif (a and\n        b):\n    y = 2\n"
    spans = covermap.statement_lines(source)
    assert spans[2] == range(1, 4) and spans[5] == range(4, 6) and spans[6] == range(6, 7)


def test_covering_tests_union_the_statement_cheapest_first() -> None:
    source = "x = f(\n    1,\n)\ny = 2\n"
    covmap = {
        "tests": ["t::slow", "t::fast", "t::other"],
        "seconds": {"t::slow": 9.0, "t::fast": 1.0, "t::other": 2.0},
        "sets": [[0], [1]],
        "modules": {"m.py": {"lines": {"1": 0, "3": 1}}},
    }
    assert covermap.covering_tests(covmap, "m.py", source, 2, 2) == ["t::fast", "t::slow"]
    assert covermap.covering_tests(covmap, "m.py", source, 4, 4) == []


def test_map_goes_stale_when_the_suite_or_a_module_changes(tmp_path: Path) -> None:
    (tmp_path / "ckptspec/conformance").mkdir(parents=True)
    (tmp_path / "ckptspec/conformance/t.py").write_text("A = 1\n")
    (tmp_path / "ckptspec/m.py").write_text("B = 1\n")
    modules = {"spec/m.py": "ckptspec/m.py"}
    covmap = {
        "suite_sha256": covermap.suite_hash(tmp_path),
        "modules": {"spec/m.py": {"sha256": covermap.sha256("B = 1\n")}},
    }
    assert covermap.stale(covmap, tmp_path, modules) == []
    (tmp_path / "ckptspec/m.py").write_text("B = 2\n")
    assert covermap.stale(covmap, tmp_path, modules) == [
        "spec/m.py changed since the map was recorded"
    ]
    (tmp_path / "ckptspec/conformance/t.py").write_text("A = 2\n")
    assert "the suite" in covermap.stale(covmap, tmp_path, modules)[0]
    assert covermap.stale(None, tmp_path, modules) == ["there is no coverage map"]


def _record(results: Path, module: mutation.ModuleConfig) -> list[str]:
    """Seven in-scope mutants of ``module`` (killed, survived triaged, survived, not covered,
    incompetent, pending, pending) and one outside its functions; returns the sampled ids."""
    record = mutation.load_record(module, results)
    outcomes = ["killed", "survived", "survived", "not covered", "incompetent", None, None]
    for n, outcome in enumerate(outcomes + ["outside"]):
        record["mutants"][f"m-{n}"] = {
            "operator": "core/NumberReplacer",
            "line": n + 1,
            "definition": "f",
            "diff_sha256": "0",
            "in_scope": outcome != "outside",
        }
        if outcome in ("killed", "survived", "not covered", "incompetent"):
            record["results"][f"m-{n}"] = {
                "outcome": outcome,
                "seconds": 30.0,
                "covering_tests": 2,
                "diff": f"-    return {n}\n+    return {n + 1}",
            }
    record["filtered"] = {"core/ReplaceBinaryOperator_Add_Mul": 4}
    record["runs"] = [{"mutants": 4, "seconds": 90, "finished": False}]
    mutation.save_record(record, module, results)
    return [f"m-{n}" for n in range(6)]  # m-6 is in scope but not sampled


def test_record_round_trips_and_report_counts_every_sampled_mutant(tmp_path: Path) -> None:
    module = mutation.ModuleConfig("reference_impl/rng.py", ("RESUME-8",))
    results = tmp_path / "results"
    sampled = _record(results, module)
    record = mutation.load_record(module, results)
    assert (
        json.loads(mutation.record_path(module, results).read_text()) == record
        and len(record["mutants"]) == 8
    )
    sample = {"seed": 1, "size": 6, "modules": {module.path: {"ids": sampled}}}
    page = mutation.render(
        mutation.Config((), (module,)),
        {"m-1": ("equivalent", "same bytes either way")},
        sample,
        results,
    )
    row = next(line for line in page.splitlines() if line.startswith("| `reference_impl/rng.py`"))
    # in scope 7, sampled 6, covered and run 2 (killed, survived x2 minus... see below), killed 1, survived 2,
    # not covered 1, equivalent 1, out of scope 0, gap 0, untriaged 2, incompetent 1, pending 1,
    # score 1 / (1 + 0 + 2) = 33 % with Wilson's interval
    assert row.split(" | ")[1:] == [
        "7",
        "6",
        "3",
        "1",
        "2",
        "1",
        "1",
        "0",
        "0",
        "2",
        "1",
        "1",
        "33 % [6, 79] |",
    ]
    assert (
        "### `m-1` (equivalent)" in page
        and "same bytes either way" in page
        and "+    return 2" in page
    )
    assert "### `m-3` (untriaged)" in page and "no test executes its line" in page
    assert "m-0" not in page.split("## Survivors")[1]  # a killed mutant is counted, not listed
    assert "4 mutants in 90 s (budget reached)" in page and "core/ReplaceBinaryOperator 4" in page


def test_triage_entries_need_a_known_verdict_and_a_reason(tmp_path: Path) -> None:
    bad = tmp_path / "triage.toml"
    bad.write_text('[mutant."m-1"]\nverdict = "harmless"\nreason = "x"\n')
    with pytest.raises(ValueError, match="m-1"):
        mutation.load_triage(bad)
    bad.write_text('[mutant."m-1"]\nverdict = "gap"\n')
    with pytest.raises(ValueError, match="needs a verdict"):
        mutation.load_triage(bad)


def test_committed_sample_is_the_rule_applied_to_the_committed_records() -> None:
    config = mutation.load_config()
    records = {m.path: mutation.load_record(m) for m in config.modules}
    committed = json.loads(mutation.SAMPLE.read_text())
    assert committed == mutation.draw_sample(config, records)
    assert sum(len(m["ids"]) for m in committed["modules"].values()) >= 150


def test_committed_page_is_current() -> None:
    sample = json.loads(mutation.SAMPLE.read_text())
    assert mutation.DOC.read_text() == mutation.render(
        mutation.load_config(), mutation.load_triage(), sample
    )


def test_committed_map_is_well_formed() -> None:
    covmap = mutation.load_map()
    if covmap is None:
        pytest.skip("no coverage map committed yet (`mutation.py map` records it)")
    paths = {m.path for m in mutation.load_config().modules}
    assert set(covmap["modules"]) <= paths and len(covmap["suite_sha256"]) == 64
    assert set(covmap["seconds"]) == set(covmap["tests"])
    for entry in covmap["modules"].values():
        assert len(entry["sha256"]) == 64
        assert all(0 <= s < len(covmap["sets"]) for s in entry["lines"].values())
    assert all(0 <= t < len(covmap["tests"]) for tests in covmap["sets"] for t in tests)
