"""Resuming at another world size (RESUME-2, RESUME-3, MANIFEST-13).

Without an elastic policy the resume must be refused with a CheckpointError before any live
state changes (full-state digests before == after). With ``elastic``, sharded state must load
bitwise equal and the next manifest must record the elastic resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ckptspec.conformance.checks import Verdict, component, diff_digests
from ckptspec.conformance.harness import Harness
from ckptspec.conformance.phase import FullState, Resume, Save, Train
from ckptspec.conformance.scenarios import saved_run
from ckptspec.conformance.strategies import WorldSizeScenario, batch_size, replay_command, scenario_test, world_size_scenarios

SHARDED = ("model", "optimizer")


def _setup(h: Harness, s: WorldSizeScenario):  # type: ignore[no-untyped-def]
    return saved_run(h, s.save_world_size, s.steps, batch_size((s.save_world_size, s.load_world_size), 1))


@pytest.mark.requirement("RESUME-3")
@scenario_test(WorldSizeScenario, world_size_scenarios)
def test_world_size_mismatch_fails_fast(harness: Harness, verdict: Verdict, scenario: WorldSizeScenario) -> None:
    """A non-elastic resume at another world size raises a CheckpointError and touches nothing."""
    verdict.begin(replay_command("test_world_size_mismatch_fails_fast", scenario))
    saved = _setup(harness, scenario)
    if saved.failure:
        verdict.check("RESUME-3", False, f"could not produce a checkpoint to resume:\n{saved.failure}")
        verdict.conclude()
    config = harness.fork(saved.config, elastic=False)
    checkpoint = str(Path(config.output_dir) / config.run_id / Path(saved.checkpoint).name)
    result = harness.phase(config, scenario.load_world_size, [FullState(), Resume(checkpoint), FullState()], may_fail={1})
    if not verdict.check("RESUME-3", not result.missing, f"the refused resume did not complete:\n{result.describe()}"):
        verdict.conclude()
    for rank, res in result.results(1).items():
        if res.ok:
            verdict.check("RESUME-3", False,
                          f"rank {rank}: resume at world size {scenario.load_world_size} of a checkpoint written at "
                          f"{scenario.save_world_size} succeeded without an elastic policy (silently proceeded)")
            continue
        err = res.error
        assert err is not None
        verdict.check("RESUME-3", err.is_checkpoint_error,
                      f"rank {rank}: refused with {err.short()}, not a ckptspec.errors.CheckpointError")
        verdict.check("RESUME-3", bool(err.details.get("components")) or "WorldSizeMismatch" in err.type,
                      f"rank {rank}: the error does not name the rank-local components: {err.short()}")
        before, after = result.value(0, rank), result.results(2).get(rank)
        verdict.check("RESUME-3", after is not None and after.ok and after.value == before,
                      f"rank {rank}: live state changed by the refused resume: "
                      f"{diff_digests(before, after.value if after is not None and after.ok else {})}")
    verdict.conclude()


@pytest.mark.needs("reshard", "elastic")
@pytest.mark.requirement("RESUME-2", "RESUME-3", "MANIFEST-13")
@scenario_test(WorldSizeScenario, world_size_scenarios)
def test_elastic_reshard(harness: Harness, verdict: Verdict, scenario: WorldSizeScenario) -> None:
    """With an elastic policy, sharded state loads bitwise equal and the next manifest says so."""
    verdict.begin(replay_command("test_elastic_reshard", scenario))
    saved = _setup(harness, scenario)
    if saved.failure:
        verdict.check("RESUME-2", False, f"could not produce a checkpoint to resume:\n{saved.failure}")
        verdict.conclude()
    config = harness.fork(saved.config, elastic=True)
    checkpoint = str(Path(config.output_dir) / config.run_id / Path(saved.checkpoint).name)
    result = harness.phase(config, scenario.load_world_size, [Resume(checkpoint), FullState(), Train(1), Save()])
    if not verdict.check("RESUME-3", not result.missing and not result.errors(),
                         f"elastic resume at world size {scenario.load_world_size} failed:\n{result.describe()}"):
        verdict.conclude()
    expected = saved.saved[0]
    for rank in range(scenario.load_world_size):
        got = result.value(1, rank)
        for name in SHARDED:
            diff = diff_digests(component(expected, name), component(got, name))
            verdict.check("RESUME-2", not diff,
                          f"rank {rank}: `{name}` loaded at world size {scenario.load_world_size} differs from the "
                          f"state saved at {scenario.save_world_size}: {diff}")
    manifest = json.loads((Path(result.value(3)) / "manifest.json").read_text())
    record = manifest.get("resumed_from") or {}
    verdict.check("MANIFEST-13", record.get("elastic") is True and bool(record.get("rederived")),
                  f"the manifest written after an elastic resume records resumed_from={record!r}; expected "
                  "elastic: true and the re-derived components")
    verdict.check("MANIFEST-13", record.get("world_size") == scenario.save_world_size,
                  f"resumed_from.world_size is {record.get('world_size')!r}, the checkpoint was written at "
                  f"{scenario.save_world_size}")
    verdict.conclude()
