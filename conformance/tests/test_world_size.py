"""Resuming at another world size (RESUME-2, RESUME-3, MANIFEST-13).

Without an elastic policy the resume must be refused with a CheckpointError before any live
state changes (full-state digests before == after). With ``elastic``, sharded state must load
bitwise equal and the next manifest must record the elastic resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ckptspec.conformance.adapter import ScenarioConfig
from ckptspec.conformance.checks import Verdict, component, diff_digests, refusal_checks
from ckptspec.conformance.harness import Harness
from ckptspec.conformance.phase import FullState, Resume, Save, Train
from ckptspec.conformance.scenarios import SavedRun, saved_run
from ckptspec.conformance.strategies import (
    WorldSizeScenario,
    batch_size,
    replay_command,
    scenario_test,
    world_size_scenarios,
)

SHARDED = ("model", "optimizer")


def _forked_checkpoint(
    h: Harness, v: Verdict, s: WorldSizeScenario, req: str, elastic: bool
) -> tuple[SavedRun, ScenarioConfig, str]:
    """The run saved at ``s.save_world_size``, a private copy of it (config with ``elastic``) and
    the path of the copy's checkpoint; fails ``req`` and concludes ``v`` if it could not be produced."""
    saved = saved_run(
        h, s.save_world_size, s.steps, batch_size((s.save_world_size, s.load_world_size), 1)
    )
    if not v.require(
        req, not saved.failure, f"could not produce a checkpoint to resume:\n{saved.failure}"
    ):
        v.conclude()
    config = h.fork(saved.config, elastic=elastic)
    return saved, config, h.moved(saved.checkpoint, saved.config, config)


@pytest.mark.requirement("RESUME-3")
@scenario_test(WorldSizeScenario, world_size_scenarios)
def test_world_size_mismatch_fails_fast(
    harness: Harness, verdict: Verdict, scenario: WorldSizeScenario
) -> None:
    """A non-elastic resume at another world size raises a CheckpointError and touches nothing."""
    verdict.begin(replay_command("test_world_size_mismatch_fails_fast", scenario))
    _, config, checkpoint = _forked_checkpoint(
        harness, verdict, scenario, "RESUME-3", elastic=False
    )
    result = harness.phase(
        config,
        scenario.load_world_size,
        [FullState(), Resume(checkpoint), FullState()],
        may_fail={1},
    )
    if not verdict.check(
        "RESUME-3", not result.missing, f"the refused resume did not complete:\n{result.describe()}"
    ):
        verdict.conclude()
    what = (
        f"a checkpoint written at world size {scenario.save_world_size}, at world size "
        f"{scenario.load_world_size} without an elastic policy"
    )
    refusal_checks(verdict, "RESUME-3", result, {1: what})
    for rank, res in sorted(result.results(1).items()):
        if res.error is not None:
            verdict.check(
                "RESUME-3",
                bool(res.error.details.get("components")) or "WorldSizeMismatch" in res.error.type,
                f"rank {rank}: the error does not name the rank-local components: {res.error.short()}",
            )
    verdict.conclude()


@pytest.mark.needs("reshard", "elastic")
@pytest.mark.requirement("RESUME-2", "RESUME-3", "MANIFEST-13")
@scenario_test(WorldSizeScenario, world_size_scenarios)
def test_elastic_reshard(harness: Harness, verdict: Verdict, scenario: WorldSizeScenario) -> None:
    """With an elastic policy, sharded state loads bitwise equal and the next manifest says so."""
    verdict.begin(replay_command("test_elastic_reshard", scenario))
    saved, config, checkpoint = _forked_checkpoint(
        harness, verdict, scenario, "RESUME-2", elastic=True
    )
    result = harness.phase(
        config, scenario.load_world_size, [Resume(checkpoint), FullState(), Train(1), Save()]
    )
    if not verdict.check(
        "RESUME-3",
        not result.missing and not result.errors(),
        f"elastic resume at world size {scenario.load_world_size} failed:\n{result.describe()}",
    ):
        verdict.conclude()
    expected = saved.saved[0]
    for rank in range(scenario.load_world_size):
        got = result.value(1, rank)
        for name in SHARDED:
            diff = diff_digests(component(expected, name), component(got, name))
            verdict.check(
                "RESUME-2",
                not diff,
                f"rank {rank}: `{name}` loaded at world size {scenario.load_world_size} differs from the "
                f"state saved at {scenario.save_world_size}: {diff}",
            )
    if not verdict.applies("MANIFEST-13"):  # n/a: no ckptspec manifest records the elastic resume
        verdict.conclude()
        return
    manifest = json.loads((Path(result.value(3)) / "manifest.json").read_text())
    record = manifest.get("resumed_from") or {}
    verdict.check(
        "MANIFEST-13",
        record.get("elastic") is True and bool(record.get("rederived")),
        f"the manifest written after an elastic resume records resumed_from={record!r}; expected "
        "elastic: true and the re-derived components",
    )
    verdict.check(
        "MANIFEST-13",
        record.get("world_size") == scenario.save_world_size,
        f"resumed_from.world_size is {record.get('world_size')!r}, the checkpoint was written at "
        f"{scenario.save_world_size}",
    )
    verdict.conclude()
