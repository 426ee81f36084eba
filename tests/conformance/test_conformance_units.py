"""Unit tests of the suite's pure parts: crash-point interposition, verdicts, report, xfails."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from ckptspec.conformance.checks import (
    StoppedOnFailure,
    UncheckedRequirement,
    Verdict,
    component,
    diff_digests,
)
from ckptspec.conformance.faults import interpose
from ckptspec.conformance.phase import Fault
from ckptspec.conformance.report import (
    RecordedTest,
    build_rows,
    exit_status,
    read_xfails,
    requirement_outcomes,
    xfail_matches,
)
from ckptspec.requirements import REQUIREMENTS


def _save(root: Path) -> None:
    staging = root / ".staging"
    os.makedirs(staging)
    with open(staging / "payload", "wb") as f:
        f.write(b"x")
        os.fsync(f.fileno())
    (staging / "manifest.tmp").write_text("{}")
    os.replace(staging / "manifest.tmp", staging / "manifest.json")
    os.rename(staging, root / "step-1")


def test_interpose_numbers_mutations_under_root_only(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.txt"
    root = tmp_path / "run"
    root.mkdir()
    originals = (builtins.open, os.rename, os.fsync)
    with interpose(str(root), Fault("count"), 0, lambda _: None) as log:
        _save(root)
        outside.write_text("not counted")
    assert [m.op for m in log] == ["mkdir", "open", "fsync", "open", "replace", "rename"]
    assert log[-1].path == ".staging" and log[-1].dst == "step-1"
    assert (builtins.open, os.rename, os.fsync) == originals


def test_oserror_fault_fires_at_its_mutation_on_its_rank(tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    with pytest.raises(OSError, match="mutation 5"):
        with interpose(str(root), Fault("oserror", rank=1, at=5), 1, lambda _: None):
            _save(root)
    assert not (root / "step-1").exists() and (root / ".staging" / "manifest.tmp").exists()
    with interpose(str(tmp_path / "other"), Fault("oserror", rank=1, at=1), 0, lambda _: None):
        (tmp_path / "other").mkdir()  # another rank's fault does not fire here


def test_verdict_attributes_each_failure_to_its_requirement() -> None:
    v = Verdict(requirements=("RESUME-1", "RESUME-8"))
    v.check("RESUME-1", True, "")
    v.check("RESUME-8", False, "rng differs")
    with pytest.raises(AssertionError, match="RESUME-8 FAILED") as info:
        v.conclude()
    assert "RESUME-1 FAILED" not in str(info.value)
    assert v.outcomes == {"RESUME-1": "pass", "RESUME-8": "fail"}
    with pytest.raises(ValueError):
        v.check("RUN-6", True, "")
    v.begin(None)
    assert v.outcomes == {}


def test_digest_helpers() -> None:
    a = {"model/w": "1", "model/b": "2", "rng/cpu": "3"}
    assert component(a, "model") == {"model/w": "1", "model/b": "2"}
    assert diff_digests(a, {**a, "model/w": "9", "x": "0"}) == [
        "model/w (differs)",
        "x (unexpected)",
    ]


def test_requirement_outcomes_keep_errors_apart_from_failures() -> None:
    assert requirement_outcomes("failed", ["A", "B"], {"A": "fail", "B": "pass"}, False) == {
        "A": "fail",
        "B": "pass",
    }
    assert requirement_outcomes("failed", ["A"], {}, True) == {"A": "error"}
    assert requirement_outcomes("skipped", ["A"], {}, False) == {"A": "skipped"}
    assert requirement_outcomes("xfailed", ["A", "B"], {"A": "fail", "B": "pass"}, False) == {
        "A": "xfail",
        "B": "pass",
    }
    # Nothing recorded is never a pass; a failure recorded before the harness broke stays a failure.
    assert requirement_outcomes("passed", ["A", "B"], {"B": "pass"}, False) == {
        "A": "not-run",
        "B": "pass",
    }
    assert requirement_outcomes("failed", ["A", "B"], {"A": "fail"}, True) == {
        "A": "fail",
        "B": "error",
    }


def test_verdict_pass_needs_a_check_that_ran() -> None:
    v = Verdict(requirements=("A", "B"))
    assert v.require("A", True, "set-up") and v.outcomes == {}
    v.check("B", True, "")
    with pytest.raises(UncheckedRequirement, match="A"):
        v.conclude()
    v.not_run("A", "no crash point landed")
    v.conclude()
    assert v.final_outcomes() == {"A": "not-run", "B": "pass"}
    v.check("A", True, "")
    assert v.final_outcomes()["A"] == "pass"
    assert not v.require("B", False, "set-up broke") and v.failed("B")


def test_verdict_keeps_the_first_failing_example() -> None:
    v = Verdict(requirements=("A",))
    v.begin("replay-1")
    v.check("A", False, "first cause")
    v.begin("replay-2")
    v.check("A", False, "a later re-execution")
    assert v.first_failure == "A: first cause\nreplay: replay-1"
    assert v.final_outcomes() == {"A": "fail"}


def test_a_failed_check_of_a_stop_on_requirement_ends_the_test_at_once() -> None:
    v = Verdict(requirements=("A", "B"), stop_on=frozenset({"B"}))
    v.begin("replay-1")
    assert not v.check("A", False, "not selected: the test goes on")
    v.blocked("B", "blocked is not a failure")
    with pytest.raises(StoppedOnFailure, match="B: digests differ") as raised:
        v.check("B", False, "digests differ")
    assert isinstance(raised.value, AssertionError)  # pytest reports the test as failed
    assert v.final_outcomes() == {"A": "fail", "B": "fail"}
    with pytest.raises(StoppedOnFailure):
        Verdict(requirements=("B",), stop_on=frozenset({"B"})).require("B", False, "no checkpoint")


def test_each_requirement_row_shows_its_own_failure_message() -> None:
    v = Verdict(requirements=("RESUME-1", "RESUME-8"))
    v.begin("replay-1")
    v.check("RESUME-1", False, "rng differs")
    v.check("RESUME-8", False, "scheduler differs")
    assert v.failures == {
        "RESUME-1": "RESUME-1: rng differs\nreplay: replay-1",
        "RESUME-8": "RESUME-8: scheduler differs\nreplay: replay-1",
    }
    record = RecordedTest(
        "t1",
        "failed",
        1.0,
        {"RESUME-1": "fail", "RESUME-8": "fail"},
        v.first_failure,
        "replay-1",
        messages=v.failures,
    )
    rows = {r.id: r for r in build_rows([record])}
    assert rows["RESUME-8"].messages == ["t1: RESUME-8: scheduler differs\nreplay: replay-1"]
    assert rows["RESUME-1"].messages == ["t1: RESUME-1: rng differs\nreplay: replay-1"]


def test_a_crash_before_any_check_fails_the_requirements_that_apply() -> None:
    outcomes = requirement_outcomes("failed", ["COMMIT-2", "COMMIT-3"], {"COMMIT-3": "n/a"}, False)
    assert outcomes == {"COMMIT-2": "fail", "COMMIT-3": "n/a"}


def test_rows_cover_every_requirement_and_exit_status() -> None:
    records = [
        RecordedTest(
            "t1", "failed", 1.0, {"RESUME-1": "fail", "RESUME-8": "pass"}, "boom", "replay"
        ),
        RecordedTest("t2", "passed", 1.0, {"RESUME-8": "pass", "EVAL-1": "error"}),
    ]
    rows = {r.id: r for r in build_rows(records)}
    assert set(rows) == {r.id for r in REQUIREMENTS}
    assert (rows["RESUME-1"].outcome, rows["RESUME-8"].outcome, rows["EVAL-1"].outcome) == (
        "fail",
        "pass",
        "error",
    )
    assert rows["LAYOUT-1"].outcome == "not-run" and rows["RESUME-1"].replay == ["replay"]
    assert exit_status(rows.values()) == 1
    rows["RESUME-1"].outcome = "pass"
    assert exit_status(rows.values()) == 2
    rows["EVAL-1"].outcome = "pass"
    assert exit_status(rows.values()) == 0
    rows["RESUME-8"].outcome = "not-run"  # MUST, named by tests that ran, checked by none
    assert exit_status(rows.values()) == 2


def test_xfails_file(tmp_path: Path) -> None:
    path = tmp_path / "xfails.txt"
    path.write_text(
        "# known\ntest_rewind  # fork not recorded yet\n\ntest_eval.py::test_eval_with_empty_shards\n"
    )
    ids = read_xfails(path)
    assert ids == ["test_rewind", "test_eval.py::test_eval_with_empty_shards"]
    assert xfail_matches("test_rewind", "test_rewind.py::test_rewind")
    assert xfail_matches(ids[1], "test_eval.py::test_eval_with_empty_shards")
    assert not xfail_matches("test_rewind", "test_rewind.py::test_rewind_other")


def test_damage_kinds_and_file_classes(tmp_path: Path) -> None:
    from ckptspec.conformance.tests.test_refusals import _damage, _payload, file_class

    ckpt, other = tmp_path / "step-000000002", tmp_path / "step-000000001"
    for d, fill in ((ckpt, b"a"), (other, b"b")):
        (d / "rng").mkdir(parents=True)
        for r in (0, 1):
            (d / "rng" / f"rank-{r:05d}.pt").write_bytes(fill * 8 + bytes([r]))
        (d / "manifest.json").write_text("{}")
    assert file_class(Path("model/__1_0.distcp")) == "model/__#_#.distcp"
    assert sorted(_payload(ckpt, native=False)) == ["rng/rank-#.pt"]  # the manifest is left out
    assert sorted(_payload(ckpt, native=True)) == ["manifest.json", "rng/rank-#.pt"]
    r0, r1 = ckpt / "rng" / "rank-00000.pt", ckpt / "rng" / "rank-00001.pt"
    before0, before1 = r0.read_bytes(), r1.read_bytes()
    assert "swap" in _damage(r0, "swap", [r1], [])
    assert (r0.read_bytes(), r1.read_bytes()) == (before1, before0)
    assert _damage(r0, "extend", [], []) and r0.read_bytes() == before1 + b"\xab" * 64
    source = other / "rng" / "rank-00000.pt"
    assert (
        "same-size" in _damage(r1, "replace", [], [source])
        and r1.read_bytes() == source.read_bytes()
    )
    assert (
        _damage(r1, "replace", [], [r1]) == ""
    )  # nothing of the same size with other bytes: not applied


def test_config_drift_covers_every_fingerprinted_key() -> None:
    from ckptspec.conformance.tests.test_refusals import UNDRIVABLE_KEYS, drifts
    from ckptspec.manifest import REQUIRED_FINGERPRINT_KEYS

    assert set(drifts(frozenset({"accumulation"}))) | UNDRIVABLE_KEYS == set(
        REQUIRED_FINGERPRINT_KEYS
    )
    assert "accumulation_steps" not in drifts(frozenset())
