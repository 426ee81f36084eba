"""Atomic commits: deterministic crash points inside a save (COMMIT-1, -2, -3, -4).

A dry run of the save records every file-system mutation of every rank (see
:mod:`ckptspec.conformance.faults`). Crash runs SIGKILL one rank just before mutation *k*; the
earlier checkpoint must be byte-for-byte unchanged, and a fresh resume of "latest" must restore
exactly what a fault-free resume of either the previous or the new checkpoint restores (COMMIT-2,
in any format: the checkpoints are found through the adapter's discovery hook). The comparison is
with a fault-free resume, not with the state saved, so that a trainer that does not restore part
of its state (RESUME-1, RESUME-8) is not also blamed for its crash consistency. For a ckptspec
writer, every committed checkpoint must also validate, and ``run.json`` must name a committed
step (it may lag behind an interrupted commit, never run ahead of one).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from ckptspec.conformance.adapter import ScenarioConfig
from ckptspec.conformance.checks import Verdict, diff_digests
from ckptspec.conformance.harness import Harness, committed_steps, file_tree
from ckptspec.conformance.phase import Fault, FullState, Mutation, Resume, Save, Train
from ckptspec.conformance.scenarios import SavedRun, saved_run
from ckptspec.conformance.strategies import (
    AtomicityScenario,
    atomicity_scenarios,
    replay_command,
    scenario_test,
)
from ckptspec.conformance.validation import error_findings
from ckptspec.layout import LAYOUT, checkpoint_dir_name, is_staging_dir, parse_checkpoint_dir

WORLD_SIZE = 2
FULL_PROFILE_CAP = 24  # crash points when every mutation is enumerated (evenly spaced beyond this)


def _restored(h: Harness, config: ScenarioConfig) -> dict[int, dict[str, str]]:
    """Per rank, the state a fault-free resume of the latest checkpoint of ``config``'s run
    restores (in a copy of the run); a rank whose resume failed is absent."""
    result = h.phase(h.fork(config), WORLD_SIZE, [Resume(None), FullState()])
    return {r: res.value for r, res in result.results(1).items() if res.ok}


def _dry_run(
    h: Harness, saved: SavedRun, between: int, async_save: bool = False
) -> tuple[dict[int, list[Mutation]], dict[int, dict[str, str]], str]:
    """Resume, train and save (in the background with ``async_save``) under a counting fault,
    then resume what was saved (memoised): per-rank mutations, the state that resume restores,
    and a failure description ('' if none)."""

    def compute(_: Path) -> tuple[dict[int, list[Mutation]], dict[int, dict[str, str]], str]:
        config = h.fork(saved.config, async_save=async_save)
        result = h.phase(config, WORLD_SIZE, [Resume(None), Train(between), Save(Fault("count"))])
        logs = {r: list(res.mutations) for r, res in result.results(2).items()}
        if result.missing or result.errors():
            return logs, {}, result.describe()
        return logs, _restored(h, config), ""

    return h.memo("dry-run", (saved.config.output_dir, between, async_save), compute)


def _saved_and_dry_run(
    h: Harness,
    v: Verdict,
    req: str,
    steps_before: int = 1,
    steps_between: int = 1,
    keep_last: int | None = None,
    async_save: bool = False,
) -> tuple[SavedRun, dict[int, list[Mutation]], dict[int, dict[str, str]]]:
    """The first checkpoint (of a run with ``keep_last`` retention) and the fault-free dry run of
    the next save (in the background with ``async_save``: mutations per rank and the state a
    resume of it restores); fails ``req`` and concludes ``v`` if either could not be produced."""
    saved = saved_run(h, WORLD_SIZE, steps_before, keep_last=keep_last)
    if not v.require(
        req, not saved.failure, f"could not produce the first checkpoint:\n{saved.failure}"
    ):
        v.conclude()
    logs, state, failure = _dry_run(h, saved, steps_between, async_save)
    if not v.require(req, not failure, f"the save failed without a fault:\n{failure}"):
        v.conclude()
    return saved, logs, state


def _crash_points(
    logs: dict[int, list[Mutation]], fractions: tuple[float, ...] | None
) -> list[tuple[int, int, Mutation]]:
    """``(rank, k, mutation)``: the first and the last mutation of the save (in any format), the
    ckptspec commit landmarks (just before and just after the rename of a directory to
    ``step-N``, and the first mutation of anything inside a ``step-N`` directory), plus the drawn
    fractions, or every mutation (capped) when there are none (``()``); ``None``: the landmarks
    only."""
    every = [(r, k, m) for r in sorted(logs) for k, m in enumerate(logs[r], start=1)]
    if not every:
        return []
    landmarks = [min(every, key=lambda p: p[2].time), max(every, key=lambda p: p[2].time)]
    inside_seen = False
    for index, (rank, _, m) in enumerate(every):
        inside = not inside_seen and _inside_checkpoint(m)
        inside_seen |= inside
        if inside or (m.op in ("rename", "replace") and is_checkpoint_name(m.dst)):
            landmarks.append(every[index])
            if index + 1 < len(every) and every[index + 1][0] == rank:
                landmarks.append(every[index + 1])
    if fractions is None:
        chosen = []
    elif not fractions:
        step = max(1, math.ceil(len(every) / FULL_PROFILE_CAP))
        chosen = every[::step]
    else:
        chosen = [every[min(len(every) - 1, int(f * len(every)))] for f in fractions]
    return sorted(set(landmarks + chosen), key=lambda p: (p[0], p[1]))


def _tree(checkpoint: Path) -> dict[str, str]:
    """:func:`file_tree` of a checkpoint directory, or the digest of a single-file checkpoint."""
    if checkpoint.is_dir():
        return file_tree(checkpoint)
    return (
        {checkpoint.name: hashlib.sha256(checkpoint.read_bytes()).hexdigest()}
        if checkpoint.is_file()
        else {}
    )


def is_checkpoint_name(path: str) -> bool:
    """Whether ``path`` ends in a committed checkpoint directory name."""
    return parse_checkpoint_dir(path.rsplit("/", 1)[-1]) is not None


def _inside_checkpoint(m: Mutation) -> bool:
    """Whether ``m`` creates, changes or moves something into a ``step-N`` directory (a trainer
    that assembles the final directory in place, instead of renaming a staged one, does)."""
    target = m.dst or m.path
    return any(is_checkpoint_name(part) for part in target.split("/")[:-1]) and m.op not in (
        "fsync",
        "fdatasync",
    )


@pytest.mark.requirement("COMMIT-2", "COMMIT-3")
@scenario_test(AtomicityScenario, atomicity_scenarios, max_examples=1)
def test_crash_during_save(harness: Harness, verdict: Verdict, scenario: AtomicityScenario) -> None:
    """SIGKILL at crash points of a save, retention included: the run keeps the old or gets the new
    checkpoint, never junk, and never loses the old one before the new one is committed."""
    verdict.begin(replay_command("test_crash_during_save", scenario))
    # The drawn mode at the drawn points; the other one (a trainer that can do both) at the landmarks.
    modes: dict[bool, tuple[float, ...] | None] = {scenario.async_save: scenario.crash_points}
    if "async_save" in harness.capabilities:
        modes.setdefault(not scenario.async_save, None)
    step_a, step_b = scenario.steps_before, scenario.steps_before + scenario.steps_between
    landed, tried = 0, 0
    for async_save, fractions in modes.items():
        saved, logs, state_b = _saved_and_dry_run(
            harness,
            verdict,
            "COMMIT-2",
            scenario.steps_before,
            scenario.steps_between,
            scenario.keep_last,
            async_save,
        )
        expected = {
            step_a: harness.memo(
                "restored",
                saved.config.output_dir,
                lambda _, config=saved.config: _restored(harness, config),
            ),
            step_b: state_b,
        }
        for step, state in expected.items():
            if not verdict.require(
                "COMMIT-2",
                len(state) == WORLD_SIZE,
                f"a fault-free resume of the committed step-{step} checkpoint failed on ranks "
                f"{sorted(set(range(WORLD_SIZE)) - set(state))}",
            ):
                verdict.conclude()
        mode = " (an asynchronous save)" if async_save else ""
        points = _crash_points(logs, fractions)
        tried += len(points)
        for rank, k, mutation in points:
            where = f"SIGKILL of rank {rank} before mutation {k} ({mutation}){mode}"
            config = harness.fork(saved.config, async_save=async_save)
            run_dir = harness.run_dir(config)
            old = harness.checkpoints(config).get(step_a)
            if not verdict.require(
                "COMMIT-2",
                old is not None,
                f"the trainer does not list the step-{step_a} checkpoint it saved",
            ):
                break
            old_tree = _tree(old)
            crash = harness.phase(
                config,
                WORLD_SIZE,
                [Resume(None), Train(scenario.steps_between), Save(Fault("kill", rank, k))],
            )
            if rank not in crash.missing:
                continue  # this run's save took another path (e.g. a differently ordered fsync); nothing to judge
            landed += 1
            # The fault fires at the first call at or after point k that changes something: name that one.
            fired = crash.progress.get(rank, "")
            where = (
                f"SIGKILL of rank {rank} {fired.removeprefix('SIGKILL ')}{mode}"
                if fired.startswith("SIGKILL")
                else where
            )
            now = harness.checkpoints(config)
            # Retention may delete the earlier checkpoint once the new one is committed, never before.
            if not (scenario.keep_last is not None and step_b in now and step_a not in now):
                retention = (
                    f" (keep_last {scenario.keep_last}, and step-{step_b} is not committed)"
                    if scenario.keep_last
                    else ""
                )
                verdict.check(
                    "COMMIT-2",
                    _tree(old) == old_tree,
                    f"after {where} the earlier checkpoint {old.name} changed{retention}",
                )
            if verdict.applies(
                "COMMIT-3"
            ):  # ckptspec's format: validate its committed checkpoints and run.json
                committed = committed_steps(run_dir)
                for step in committed:
                    findings = error_findings(run_dir / checkpoint_dir_name(step))
                    verdict.check(
                        "COMMIT-2",
                        not findings,
                        f"after {where} committed {checkpoint_dir_name(step)} does not validate: {findings[:3]}",
                    )
                index_file = run_dir / LAYOUT.run_index_file
                latest = (
                    json.loads(index_file.read_text()).get("latest_step")
                    if index_file.is_file()
                    else None
                )
                # The index may lag behind a commit that a crash interrupted (it is rebuilt from the
                # directories), but it must never name a step that is not committed.
                verdict.check(
                    "COMMIT-3",
                    latest in committed,
                    f"after {where} run.json latest_step is {latest!r} but the committed steps are {committed}",
                )
            resumed = harness.phase(config, WORLD_SIZE, [Resume(None), FullState()])
            if not verdict.check(
                "COMMIT-2",
                not resumed.missing and not resumed.errors(),
                f"after {where} resuming latest failed:\n{resumed.describe()}",
            ):
                continue
            step = resumed.value(0)
            if not verdict.check(
                "COMMIT-2",
                step in expected,
                f"after {where} latest resumed at step {step}; expected {step_a} or {step_b}",
            ):
                continue
            for r in range(WORLD_SIZE):
                diff = diff_digests(expected[step].get(r, {}), resumed.value(1, r))
                verdict.check(
                    "COMMIT-2",
                    not diff,
                    f"after {where} rank {r} resumed at {step} with a state unlike a fault-free resume of it: {diff}",
                )
    if not landed:
        for requirement in verdict.applicable():
            verdict.not_run(requirement, f"none of the {tried} crash points landed")
    verdict.conclude()


@pytest.mark.requirement("COMMIT-1", "COMMIT-3")
def test_commit_order(harness: Harness, verdict: Verdict) -> None:
    """Payload staged and fsynced before the manifest; manifest before the rename; run dir fsynced
    after; run.json replaced only after the rename."""
    saved, logs, _ = _saved_and_dry_run(harness, verdict, "COMMIT-1")
    run = saved.config.run_id
    final = f"{run}/{checkpoint_dir_name(2)}"
    events = sorted((m for log in logs.values() for m in log), key=lambda m: m.time)
    commit = [m for m in events if m.op in ("rename", "replace") and m.dst == final]
    if not verdict.check(
        "COMMIT-1",
        len(commit) == 1,
        f"no single rename of a staging directory to {final}: {[str(m) for m in events if m.dst == final]}",
    ):
        verdict.conclude()
    renamed = commit[0]
    staging = renamed.path
    verdict.check(
        "COMMIT-1",
        is_staging_dir(Path(staging).name),
        f"{final} was renamed from {staging}, not a staging directory",
    )
    manifest_at = [
        m.time
        for m in events
        if m.op in ("rename", "replace") and m.dst == f"{staging}/{LAYOUT.manifest_file}"
    ]
    manifest_at += [
        m.time
        for m in events
        if m.op in ("open", "os.open") and m.path == f"{staging}/{LAYOUT.manifest_file}"
    ]
    if not verdict.check(
        "COMMIT-1", bool(manifest_at), f"no write of {staging}/{LAYOUT.manifest_file} seen"
    ):
        verdict.conclude()
    marked = min(manifest_at)
    verdict.check(
        "COMMIT-1",
        marked < renamed.time,
        "the manifest was written after the staging directory was renamed",
    )
    written = {
        m.path
        for m in events
        if m.op in ("open", "os.open") and m.path.startswith(staging + "/") and m.time < marked
    }
    synced = {m.path for m in events if m.op in ("fsync", "fdatasync") and m.time < marked}
    verdict.check(
        "COMMIT-1",
        written <= synced,
        f"payload not fsynced before the manifest: {sorted(written - synced)[:5]}",
    )
    outside = sorted(
        {
            m.path
            for m in events
            if m.op in ("open", "os.open")
            and m.time < renamed.time
            and not m.path.startswith(staging + "/")
        }
        - {f"{run}/.{LAYOUT.run_index_file}.tmp"}
    )
    verdict.check(
        "COMMIT-1",
        not outside,
        f"payload written outside the staging directory before the commit: {outside[:5]}",
    )
    verdict.check(
        "COMMIT-1",
        any(m.op == "fsync" and m.path == run and m.time > renamed.time for m in events),
        "the run directory was not fsynced after the rename",
    )
    index = f"{run}/{LAYOUT.run_index_file}"
    early = [
        str(m)
        for m in events
        if m.op in ("rename", "replace", "open", "os.open")
        and index in (m.path, m.dst)
        and m.time < renamed.time
    ]
    verdict.check(
        "COMMIT-3", not early, f"{index} was written before {final} was committed: {early[:3]}"
    )
    verdict.conclude()


@pytest.mark.requirement("COMMIT-4")
def test_failed_save_fails_everywhere(harness: Harness, verdict: Verdict) -> None:
    """An I/O error on one non-zero rank during a save makes the save fail on every rank, uncommitted."""
    saved, logs, _ = _saved_and_dry_run(harness, verdict, "COMMIT-4")
    rank = max(r for r in logs if logs[r]) if any(logs.values()) else 0
    count = len(logs.get(rank, []))
    # Midway the error usually lands inside the checkpoint library, which may fail the save by
    # itself; at the rank's last mutation only the trainer's own agreement before commit can.
    for k in sorted({max(1, count // 2), max(1, count)}):
        config = harness.fork(saved.config)
        result = harness.phase(
            config,
            WORLD_SIZE,
            [Resume(None), Train(1), Save(Fault("oserror", rank, k))],
            may_fail={2},
        )
        outcome = result.results(2)
        failed = outcome.get(rank)
        fired = failed.error.message if failed is not None and failed.error is not None else ""
        # where the EIO really fired (at or after point k: a no-op never fails), as the fault layer said
        what = (
            f"the {fired[fired.index('EIO at') :]} on rank {rank}"
            if "ckptspec fault injection: EIO at" in fired
            else f"EIO on rank {rank} at mutation {k} ({logs[rank][k - 1] if logs.get(rank) else '?'})"
        )
        verdict.check(
            "COMMIT-4",
            not result.timed_out,
            f"after {what} ranks were left blocked:\n{result.describe()}",
        )
        succeeded = sorted(r for r, res in outcome.items() if res.ok)
        verdict.check(
            "COMMIT-4",
            not succeeded,
            f"after {what} the save returned normally on ranks {succeeded}",
        )
        verdict.check(
            "COMMIT-4",
            2 not in harness.checkpoints(config),
            f"after {what} step 2 was committed anyway",
        )
    verdict.conclude()
