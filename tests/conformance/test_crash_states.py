"""The power-loss state construction, on journals of real file-system calls (no rank processes)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ckptspec.checkpointing.fsio import fsync_path, write_atomic, write_durable
from ckptspec.conformance.crash_states import Choice, CrashModel
from ckptspec.conformance.faults import interpose, read_journal
from ckptspec.conformance.harness import file_tree
from ckptspec.conformance.phase import Fault


def _crash(tmp_path: Path, ops: Callable[[Path], None]) -> CrashModel:
    """Seed ``out/run`` with ``step-1``, snapshot it, run ``ops`` under a journal; the model."""
    out = tmp_path / "out"
    run = out / "run"
    (run / "step-1").mkdir(parents=True)
    (run / "step-1" / "manifest.json").write_text("one")
    (run / "latest").write_text("step-1 pointer")
    before = tmp_path / "before"
    os.system(f"cp -a {out} {before}")
    journal = tmp_path / "journal"
    with interpose(str(out), Fault("count", journal=str(journal)), 0, lambda _: None):
        ops(run)
    return CrashModel(before, out, journal, read_journal(journal))


def _state(
    tmp_path: Path, model: CrashModel, choices: list[Choice], name: str = "state"
) -> dict[str, str]:
    target = tmp_path / name
    model.build(target, choices)
    return {path: (target / path).read_text() for path in file_tree(target)}


def _durable_save(run: Path) -> None:
    staging = run / ".staging-2"
    staging.mkdir()
    write_durable(staging / "payload", b"weights")
    write_atomic(staging / "manifest.json", b"two")
    fsync_path(staging)
    os.rename(staging, run / "step-2")
    fsync_path(run)


def test_a_durable_save_survives_every_power_loss(tmp_path: Path) -> None:
    model = _crash(tmp_path, _durable_save)
    assert model.candidates() == []  # every effect was fsynced, file data and entries alike
    state = _state(tmp_path, model, model.worst())
    assert state["run/step-2/manifest.json"] == "two" and state["run/step-2/payload"] == "weights"
    assert state["run/step-1/manifest.json"] == "one"


def test_a_rename_without_a_directory_fsync_may_be_undone(tmp_path: Path) -> None:
    def save(run: Path) -> None:
        staging = run / ".staging-2"
        staging.mkdir()
        write_atomic(staging / "manifest.json", b"two")
        os.rename(staging, run / "step-2")  # no fsync of the run directory

    model = _crash(tmp_path, save)
    undo = [c for c in model.candidates() if c.kind == "undo"]
    assert {c.path for c in undo} == {"run/.staging-2", "run/step-2"}  # the mkdir and the rename
    worst = _state(tmp_path, model, model.worst())
    assert not any(p.startswith("run/step-2") or p.startswith("run/.staging") for p in worst)
    rename = next(c for c in undo if c.path == "run/step-2")
    kept_mkdir = _state(tmp_path, model, [rename], "rename-undone")
    assert (
        kept_mkdir["run/.staging-2/manifest.json"] == "two"
    )  # the staged file is durable in place


def test_unsynced_data_is_cut_to_its_last_fsync_or_to_empty(tmp_path: Path) -> None:
    def save(run: Path) -> None:
        with open(run / "log", "wb") as f:
            f.write(b"first")
            f.flush()
            os.fsync(f.fileno())
            f.write(b" second")  # after the fsync: may be lost
        (run / "manifest.tmp").write_bytes(b"never synced")
        fsync_path(run)

    model = _crash(tmp_path, save)
    assert {(c.kind, c.path) for c in model.candidates()} == {
        ("cut", "run/log"),
        ("tear", "run/log"),
        ("cut", "run/manifest.tmp"),
        ("tear", "run/manifest.tmp"),
    }
    state = _state(tmp_path, model, model.worst())
    assert state["run/log"] == "first" and state["run/manifest.tmp"] == ""
    torn = _state(tmp_path, model, [Choice("tear", "run/manifest.tmp")], "torn")
    assert torn["run/manifest.tmp"] == "never "  # the first half of the new content
    assert torn["run/log"] == "first second"  # not chosen: as the kill left it


def test_an_in_place_rewrite_may_be_torn_and_an_unlink_undone(tmp_path: Path) -> None:
    def rewrite(run: Path) -> None:
        with open(run / "latest", "r+") as f:  # in place, without truncation, never fsynced
            f.write("STEP-2-X")
        os.unlink(run / "step-1" / "manifest.json")  # its directory is not fsynced

    model = _crash(tmp_path, rewrite)
    kill = {p: (tmp_path / "out" / p).read_text() for p in file_tree(tmp_path / "out")}
    new, old = kill["run/latest"], "step-1 pointer"
    assert new == "STEP-2-Xointer" and "run/step-1/manifest.json" not in kill
    worst = _state(tmp_path, model, model.worst())
    assert worst["run/latest"] == old and worst["run/step-1/manifest.json"] == "one"
    torn = _state(tmp_path, model, [Choice("tear", "run/latest")], "torn")
    assert torn["run/latest"] == "STEP-2-pointer" not in (new, old)
    assert "run/step-1/manifest.json" not in torn


def test_the_construction_is_deterministic(tmp_path: Path) -> None:
    def save(run: Path) -> None:
        (run / "run.json").write_text("{}")  # neither the file nor the directory fsynced
        os.rename(run / "latest", run / "latest.old")

    model = _crash(tmp_path, save)
    picked = model.pick([0.1, 0.6, 0.99])
    assert picked == model.pick([0.1, 0.6, 0.99]) and 1 <= len(picked) <= 3
    assert _state(tmp_path, model, picked, "a") == _state(tmp_path, model, picked, "b")


def _syncs(model: CrashModel) -> list[int]:
    return [i for i, e in enumerate(model.entries) if e.op == "sync"]


def test_an_earlier_point_keeps_only_what_was_durable_then(tmp_path: Path) -> None:
    """A durable save, cut just before its fsyncs: until the run directory's fsync, the staging
    directory's creation and its rename may be undone, so only step 1 is there."""
    model = _crash(tmp_path, _durable_save)
    syncs = _syncs(model)
    last = _state(tmp_path, model.at(syncs[-1]), model.at(syncs[-1]).worst(), "before-last")
    assert set(last) == {"run/step-1/manifest.json", "run/latest"}
    first = _state(tmp_path, model.at(syncs[0]), model.at(syncs[0]).worst(), "before-first")
    assert set(first) == {"run/step-1/manifest.json", "run/latest"}
    assert first["run/latest"] == "step-1 pointer"
    whole = model.at(len(model.entries))
    assert _state(tmp_path, whole, whole.worst(), "whole") == _state(tmp_path, model, [], "all")


def test_an_in_place_rewrite_is_empty_before_its_fsync(tmp_path: Path) -> None:
    """A pointer file truncated and rewritten in place is lost by a power loss before its fsync,
    though the save returns with it fsynced."""

    def save(run: Path) -> None:
        with open(run / "latest", "wb") as f:
            f.write(b"step-2 pointer")
            f.flush()
            os.fsync(f.fileno())

    model = _crash(tmp_path, save)
    assert model.candidates() == []
    before_fsync = model.at(_syncs(model)[0])
    assert _state(tmp_path, before_fsync, before_fsync.worst())["run/latest"] == ""
    with pytest.raises(ValueError, match="only the worst state"):
        before_fsync.build(tmp_path / "partial", [])
