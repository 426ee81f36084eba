"""Integrity before mutation (RESUME-6), discovery (LAYOUT-8, LAYOUT-3, LAYOUT-4), drift (RESUME-5)."""

from __future__ import annotations

import bisect
import itertools
import os
import time
import uuid
from pathlib import Path

import pytest

from ckptspec.conformance.checks import Verdict, refusal_checks
from ckptspec.conformance.harness import Harness
from ckptspec.conformance.phase import FullState, Resume
from ckptspec.conformance.scenarios import saved_run, stepped_run
from ckptspec.conformance.strategies import IntegrityScenario, integrity_scenarios, replay_command, scenario_test
from ckptspec.layout import LAYOUT, checkpoint_dir_name, staging_dir_name


def _damage(checkpoint: Path, how: str, pick: float, native: bool) -> str:
    """Damage a non-empty regular file of ``checkpoint`` (a directory, or a single file); return
    what was done. A flip hits the file holding the byte at fraction ``pick`` of the bytes, a
    truncation or deletion the file at fraction ``pick`` of the files (see
    :class:`IntegrityScenario`). Any payload file may be picked, whatever the format. A ckptspec
    manifest is left alone: it is the commit marker, and a damaged one is LAYOUT-3's and the
    validator's."""
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_size > 0
                   and (native or p.relative_to(checkpoint) != Path(LAYOUT.manifest_file))) \
        if checkpoint.is_dir() else [checkpoint]
    ends = list(itertools.accumulate(p.stat().st_size if how == "flip" else 1 for p in files))
    target = files[min(bisect.bisect_right(ends, int(pick * ends[-1])), len(files) - 1)]
    data = target.read_bytes()
    if how == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        middle = len(data) // 2
        target.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :])
    else:
        target.unlink()
    return f"{how} {target.relative_to(checkpoint.parent)}"


MIDDLE_BYTES = IntegrityScenario(("flip", "truncate", "delete"), (0.5, 0.5, 0.5))
"""A bit flip in the middle byte of a checkpoint (most often inside a large shard, where bit rot
lands), and a truncated and a deleted file from the middle of the file list: run by every
profile, since a small or derandomized one may draw only the first file."""


@pytest.mark.requirement("RESUME-6")
@scenario_test(IntegrityScenario, integrity_scenarios, always=[MIDDLE_BYTES])
def test_integrity_before_mutation(harness: Harness, verdict: Verdict, scenario: IntegrityScenario) -> None:
    """Truncated, bit-flipped or deleted payload: the resume fails before live state changes."""
    verdict.begin(replay_command("test_integrity_before_mutation", scenario))
    setup = stepped_run(harness, 3)
    if not verdict.require("RESUME-6", not setup.failure, f"could not produce the checkpoints:\n{setup.failure}"):
        verdict.conclude()
    config = harness.fork(setup.config)
    found = harness.checkpoints(config)
    if not verdict.require("RESUME-6", sorted(found) == [1, 2, 3], f"the trainer lists checkpoints {sorted(found)}, expected steps 1-3"):
        verdict.conclude()
    damaged = [_damage(found[step], how, pick, harness.native) for step, how, pick in zip((1, 2, 3), scenario.damages, scenario.picks)]
    actions = [FullState(), *(Resume(str(found[s])) for s in (1, 2, 3)), FullState()]
    result = harness.phase(config, 2, actions, may_fail={1, 2, 3})
    if not verdict.check("RESUME-6", not result.missing, f"resumes of damaged checkpoints did not complete:\n{result.describe()}"):
        verdict.conclude()
    refusal_checks(verdict, "RESUME-6", result, dict(enumerate(damaged, start=1)))
    verdict.conclude()


@pytest.mark.requirement("LAYOUT-8", "LAYOUT-3", "LAYOUT-4")
def test_discovery_by_step_and_marker(harness: Harness, verdict: Verdict) -> None:
    """Latest is the highest committed step: not the newest mtime, not a manifest-less or staging dir."""
    setup = stepped_run(harness, 3)
    if not verdict.require("LAYOUT-8", not setup.failure, f"could not produce the checkpoints:\n{setup.failure}"):
        verdict.conclude()
    config = harness.fork(setup.config)
    run_dir = harness.run_dir(config)
    future = time.time() + 3600
    os.utime(run_dir / checkpoint_dir_name(1), (future, future))
    for child in (run_dir / checkpoint_dir_name(1)).rglob("*"):
        os.utime(child, (future, future), follow_symlinks=False)
    decoy = run_dir / checkpoint_dir_name(50)  # a step directory without a manifest
    decoy.mkdir()
    (decoy / "payload.bin").write_bytes(b"not a checkpoint")
    staging = run_dir / staging_dir_name(99, uuid.uuid4().hex)
    staging.mkdir()
    (staging / "payload.bin").write_bytes(b"in flight")
    result = harness.phase(config, 2, [Resume(None)])
    got = {r: res.value if res.ok else res.error.short() for r, res in result.results(0).items()}  # type: ignore[union-attr]
    ok = not result.missing and all(v == 3 for v in got.values())
    verdict.check("LAYOUT-3", ok or 50 not in got.values(), f"resumed from {checkpoint_dir_name(50)}, which has no manifest")
    verdict.check("LAYOUT-4", ok or 99 not in got.values(), "resumed from a staging directory")
    verdict.check("LAYOUT-8", ok or bool({50, 99} & set(got.values())),
                  f"resume of latest gave {got} (step 1 has the newest mtime); expected step 3\n{result.describe()}")
    verdict.conclude()


@pytest.mark.requirement("RESUME-5")
def test_config_drift_fails_fast(harness: Harness, verdict: Verdict) -> None:
    """Changing fingerprinted settings makes the resume fail before any change, naming each key."""
    saved = saved_run(harness, 2, 1)
    if not verdict.require("RESUME-5", not saved.failure, f"could not produce a checkpoint:\n{saved.failure}"):
        verdict.conclude()
    changes = {"global_batch_size": 24}
    if "accumulation" in harness.capabilities:
        changes["accumulation_steps"] = 2
    config = harness.fork(saved.config, **changes)
    result = harness.phase(config, 2, [FullState(), Resume(None), FullState()], may_fail={1})
    if not verdict.check("RESUME-5", not result.missing, f"the drifted resume did not complete:\n{result.describe()}"):
        verdict.conclude()
    refusal_checks(verdict, "RESUME-5", result, {1: f"a checkpoint with drifted {sorted(changes)}"})
    for rank, res in result.results(1).items():
        if res.error is None:
            continue
        named = set(res.error.details.get("differences", [])) or {k for k in changes if k in res.error.message}
        verdict.check("RESUME-5", set(changes) <= named,
                      f"rank {rank}: the drift error names {sorted(named)}, expected every changed key {sorted(changes)}")
    verdict.conclude()
