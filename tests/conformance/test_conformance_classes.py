"""Conformance classes and the ``n/a`` outcome: a native-format trainer is judged on the
resume-conformant class only, and a ckptspec-writer requirement is never ``pass`` for it.

Also the format-independent fault layer: writes that torch and safetensors make from native
code are numbered, and no-op calls are never faulted."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ckptspec.conformance.checks import UncheckedRequirement, Verdict
from ckptspec.conformance.faults import interpose
from ckptspec.conformance.phase import Fault
from ckptspec.conformance.report import RecordedTest, build_rows, exit_status, requirement_outcomes, summary_table
from ckptspec.requirements import REQUIREMENTS, ConformanceClass


def test_every_requirement_has_a_class_and_crash_consistency_is_resume_class() -> None:
    classes = {r.id: r.conformance_class for r in REQUIREMENTS}
    assert classes["COMMIT-2"] is ConformanceClass.RESUME  # old or new state after a crash: any format
    assert classes["COMMIT-1"] is ConformanceClass.WRITER  # the rename of a staging dir to step-N
    assert all(classes[f"RESUME-{n}"] is ConformanceClass.RESUME for n in range(1, 11))
    assert all(c is ConformanceClass.WRITER for i, c in classes.items() if i.startswith(("LAYOUT-", "MANIFEST-")))


def test_native_verdict_marks_writer_requirements_na_and_refuses_to_pass_them() -> None:
    v = Verdict(requirements=("COMMIT-2", "COMMIT-3"), native=True)
    v.not_applicable("COMMIT-3", "no run.json")
    v.check("COMMIT-2", True, "")
    v.conclude()
    assert v.final_outcomes() == {"COMMIT-2": "pass", "COMMIT-3": "n/a"}
    with pytest.raises(ValueError, match="cannot pass"):
        v.check("COMMIT-3", True, "")
    with pytest.raises(ValueError, match="must be judged"):
        v.not_applicable("COMMIT-2", "a resume-class requirement is never n/a")


def test_ckptspec_verdict_cannot_mark_anything_na() -> None:
    v = Verdict(requirements=("COMMIT-3",))
    with pytest.raises(ValueError, match="must be judged"):
        v.not_applicable("COMMIT-3", "a ckptspec writer must keep it")


def test_na_does_not_hide_an_unchecked_resume_requirement() -> None:
    v = Verdict(requirements=("COMMIT-2", "COMMIT-3"), native=True)
    v.not_applicable("COMMIT-3", "no run.json")
    with pytest.raises(UncheckedRequirement, match="COMMIT-2"):
        v.conclude()


def test_na_test_outcome_is_neither_pass_nor_failure() -> None:
    outcomes = requirement_outcomes("n/a", ["COMMIT-1", "COMMIT-3"], {}, False)
    assert outcomes == {"COMMIT-1": "n/a", "COMMIT-3": "n/a"}
    rows = build_rows([RecordedTest("t::commit_order", "n/a", 0.0, outcomes)])
    by_id = {r.id: r for r in rows}
    assert by_id["COMMIT-1"].outcome == "n/a" and by_id["COMMIT-3"].outcome == "n/a"
    assert exit_status(rows) == 0
    assert "2 n/a" in summary_table(rows)[-1]
    assert any(line.startswith("COMMIT-1") and " N/A " in line for line in summary_table(rows))
    failed = build_rows([RecordedTest("t::commit_order", "n/a", 0.0, outcomes),
                         RecordedTest("t::crash", "failed", 0.0, {"COMMIT-2": "fail"})])
    assert exit_status(failed) == 1


def test_fault_layer_skips_no_ops_and_numbers_torch_save(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    existing = tmp_path / "dir"
    existing.mkdir()
    with interpose(str(tmp_path), Fault("oserror", 0, 1), 0, lambda _: None) as log:
        os.makedirs(existing, exist_ok=True)  # a no-op: numbered, but the fault moves to the next real write
        with pytest.raises(OSError) as raised:
            torch.save({"x": torch.ones(2)}, str(existing / "state.pt"))
    assert raised.value.errno == errno.EIO
    assert [(m.op, m.path) for m in log] == [("mkdir", "dir"), ("torch.save", "dir/state.pt")]
    assert not (existing / "state.pt").exists()


def test_fault_layer_numbers_safetensors_writes(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    with interpose(str(tmp_path), Fault("count"), 0, lambda _: None) as log:
        safetensors_torch.save_file({"x": torch.ones(2)}, str(tmp_path / "model.safetensors"))
    assert [m.op for m in log] == ["safetensors"]
