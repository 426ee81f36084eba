"""Conformance classes and the ``n/a`` outcome: a native-format trainer is judged on the
resume-conformant class only, and a ckptspec-writer requirement is never ``pass`` for it; the
adapter declarations that say which format a trainer keeps, read through one function.

Also the format-independent fault layer: writes that torch and safetensors make from native
code are numbered, and no-op calls are never faulted."""

from __future__ import annotations

import errno
import os
import typing
from pathlib import Path

import pytest

from ckptspec.conformance.adapter import (
    CAPABILITIES,
    CHECKPOINT_FORMATS,
    Capability,
    ScenarioConfig,
    TrainerAdapter,
    declarations,
)
from ckptspec.conformance.checks import UncheckedRequirement, Verdict
from ckptspec.conformance.faults import interpose
from ckptspec.conformance.phase import Fault
from ckptspec.conformance.report import (
    RecordedTest,
    build_rows,
    exit_status,
    requirement_outcomes,
    summary_table,
)
from ckptspec.requirements import REQUIREMENTS, ConformanceClass


def test_every_requirement_has_a_class_and_crash_consistency_is_resume_class() -> None:
    classes = {r.id: r.conformance_class for r in REQUIREMENTS}
    assert (
        classes["COMMIT-2"] is ConformanceClass.RESUME
    )  # old or new state after a crash: any format
    assert classes["COMMIT-1"] is ConformanceClass.WRITER  # the rename of a staging dir to step-N
    assert all(classes[f"RESUME-{n}"] is ConformanceClass.RESUME for n in range(1, 11))
    assert all(
        c is ConformanceClass.WRITER
        for i, c in classes.items()
        if i.startswith(("LAYOUT-", "MANIFEST-"))
    )


def test_native_verdict_marks_writer_requirements_na_by_itself_and_refuses_to_judge_them() -> None:
    v = Verdict(requirements=("COMMIT-2", "COMMIT-3"), native=True)
    assert not v.applies("COMMIT-3") and v.applies("COMMIT-2") and v.applicable() == ["COMMIT-2"]
    assert (
        v.final_outcomes() == {"COMMIT-3": "n/a"} and "ckptspec-writer" in v.messages["COMMIT-3"][0]
    )
    v.check("COMMIT-2", True, "")
    v.conclude()
    assert v.final_outcomes() == {"COMMIT-2": "pass", "COMMIT-3": "n/a"}
    for record in (
        lambda: v.check("COMMIT-3", True, ""),
        lambda: v.check("COMMIT-3", False, "x"),
        lambda: v.not_run("COMMIT-3", "x"),
        lambda: v.blocked("COMMIT-3", "x"),
    ):
        with pytest.raises(ValueError, match="cannot be judged"):
            record()
    assert v.final_outcomes()["COMMIT-3"] == "n/a"


def test_na_survives_a_new_example() -> None:
    v = Verdict(requirements=("COMMIT-2", "COMMIT-3"), native=True)
    v.check("COMMIT-2", True, "")
    v.begin("replay")
    assert v.final_outcomes() == {"COMMIT-3": "n/a"}


def test_ckptspec_verdict_judges_every_requirement() -> None:
    v = Verdict(requirements=("COMMIT-1", "COMMIT-3"))
    assert v.applicable() == ["COMMIT-1", "COMMIT-3"] and v.final_outcomes() == {}
    v.check("COMMIT-3", True, "")
    with pytest.raises(UncheckedRequirement, match="COMMIT-1"):
        v.conclude()


def test_na_does_not_hide_an_unchecked_resume_requirement() -> None:
    v = Verdict(requirements=("COMMIT-2", "COMMIT-3"), native=True)
    with pytest.raises(UncheckedRequirement, match="COMMIT-2"):
        v.conclude()


def test_all_writer_test_of_native_adapter_needs_no_check() -> None:
    v = Verdict(requirements=("COMMIT-1", "COMMIT-3"), native=True)
    assert v.applicable() == []
    v.conclude()  # every requirement has its outcome: n/a
    assert v.final_outcomes() == {"COMMIT-1": "n/a", "COMMIT-3": "n/a"}


def test_na_test_outcome_is_neither_pass_nor_failure() -> None:
    outcomes = requirement_outcomes("n/a", ["COMMIT-1", "COMMIT-3"], {}, False)
    assert outcomes == {"COMMIT-1": "n/a", "COMMIT-3": "n/a"}
    rows = build_rows([RecordedTest("t::commit_order", "n/a", 0.0, outcomes)])
    by_id = {r.id: r for r in rows}
    assert by_id["COMMIT-1"].outcome == "n/a" and by_id["COMMIT-3"].outcome == "n/a"
    assert exit_status(rows) == 0
    assert "2 n/a" in summary_table(rows)[-1]
    assert any(line.startswith("COMMIT-1") and " N/A " in line for line in summary_table(rows))
    failed = build_rows(
        [
            RecordedTest("t::commit_order", "n/a", 0.0, outcomes),
            RecordedTest("t::crash", "failed", 0.0, {"COMMIT-2": "fail"}),
        ]
    )
    assert exit_status(failed) == 1


def test_fault_layer_skips_no_ops_and_numbers_torch_save(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    existing = tmp_path / "dir"
    existing.mkdir()
    with interpose(str(tmp_path), Fault("oserror", 0, 1), 0, lambda _: None) as log:
        os.makedirs(
            existing, exist_ok=True
        )  # a no-op: numbered, but the fault moves to the next real write
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


class _OldWriter:  # a v1 adapter: declares only capabilities, subclasses nothing
    capabilities = frozenset({"eval"})


class _OldNative:  # a v2 adapter without the base class
    capabilities = frozenset()
    checkpoint_format = "native"
    refusal_errors = (KeyError,)
    framework = "toy 1.0"

    @staticmethod
    def committed_checkpoints(config: ScenarioConfig) -> dict[int, str]:
        return {3: "b", 1: "a"}


def test_declarations_of_adapters_without_the_base_class_take_its_defaults(tmp_path: Path) -> None:
    config = ScenarioConfig(output_dir=str(tmp_path), run_id="run")
    (tmp_path / "run" / "step-000000002").mkdir(parents=True)
    (tmp_path / "run" / "step-000000002" / "manifest.json").write_text("{}")
    (tmp_path / "run" / "step-000000004").mkdir()  # no manifest: not committed
    old = declarations(_OldWriter)
    assert (
        old.capabilities,
        old.eval_set_size,
        old.checkpoint_format,
        old.refusal_errors,
        old.framework,
    ) == (frozenset({"eval"}), 0, "ckptspec", (), "")
    assert not old.native and old.checkpoints(config) == {
        2: str(tmp_path / "run" / "step-000000002")
    }
    native = declarations(_OldNative)
    assert native.native and native.refusal_errors == (KeyError,) and native.framework == "toy 1.0"
    assert list(native.checkpoints(config).items()) == [(1, "a"), (3, "b")]
    assert declarations(TrainerAdapter) == declarations(type("Empty", (TrainerAdapter,), {}))


def test_capabilities_and_formats_come_from_their_literals() -> None:
    assert CAPABILITIES == typing.get_args(Capability) and "micro_steps" in CAPABILITIES
    assert CHECKPOINT_FORMATS == ("ckptspec", "native")


@pytest.mark.parametrize(
    "attribute, value, message",
    [
        ("capabilities", frozenset({"teleport"}), "unknown capabilities"),
        ("checkpoint_format", "zip", "checkpoint_format 'zip'"),
        ("refusal_errors", [KeyError], "refusal_errors"),
        ("committed_checkpoints", "step-N", "static method"),
    ],
)
def test_malformed_declarations_are_named(attribute: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        declarations(type("Bad", (TrainerAdapter,), {attribute: value}))
