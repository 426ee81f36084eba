"""Single writer per run (RUN-8): a second job on a run that a live job holds is refused.

The first job is held at a gate between adapter calls, and then, on fresh runs, inside its
second save at the first file-system call of each of its parts (staging, commit, retention,
index update; the fault layer's ``hold``), since a claim that covers only part of a save lets a
second writer in at the others."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ckptspec.conformance.checks import Verdict
from ckptspec.conformance.gate import Gate
from ckptspec.conformance.harness import Harness, committed_steps, file_tree
from ckptspec.conformance.phase import Fault, Hold, Mutation, PhaseResult, Resume, Save, Train
from ckptspec.layout import LAYOUT, checkpoint_dir_name
from ckptspec.run_check import check_run

WORLD_SIZE = 2


def _entries(run_dir: Path) -> dict[str, str]:
    """Every file (with its digest), link and directory under ``run_dir``: detects any change."""
    tree = file_tree(run_dir)
    tree.update(
        {
            str(Path(d).relative_to(run_dir)): "dir"
            for d, _, _ in os.walk(run_dir)
            if d != str(run_dir)
        }
    )
    return tree


def _save_parts(log: list[Mutation], step: int) -> dict[str, int]:
    """Where each part of a save starts in rank 0's mutations (numbered from 1): staging (its
    first mutation), commit (the rename onto the step's directory), then retention (the first
    removal) and the index update (the first call on the run index) after the commit."""
    parts = {"staging": 1} if log else {}
    name = checkpoint_dir_name(step)
    commit = next(
        (
            k
            for k, m in enumerate(log, 1)
            if m.op in ("rename", "replace") and Path(m.dst).name == name
        ),
        None,
    )
    if commit is None:
        return parts
    parts["commit"] = commit
    later = [(k, m) for k, m in enumerate(log, 1) if k > commit]
    for part, hit in (
        ("retention", lambda m: m.op in ("unlink", "remove", "rmdir")),
        ("index update", lambda m: LAYOUT.run_index_file in (Path(m.path).name + Path(m.dst).name)),
    ):
        first = next((k for k, m in later if hit(m)), None)
        if first is not None:
            parts[part] = first
    return parts


def _held_writer(
    harness: Harness, verdict: Verdict, config: Any, actions: list[Any], gate: Gate, where: str
) -> PhaseResult | None:
    """Run job A (``actions``, which wait at ``gate``) in the background; while it waits, job B
    on the same run must be refused on every rank with a CheckpointError and change nothing.
    Returns job A's result, or None (after a failed check) if it ended before it waited."""
    run_dir = harness.run_dir(config)
    job_a = harness.phase_in_background(config, WORLD_SIZE, actions)
    gate.watch(job_a)
    try:
        if not gate.reached():
            verdict.check(
                "RUN-8",
                False,
                f"job A ended before it held the run {where}:\n{job_a.result().describe()}",
            )
            return None
        before = _entries(run_dir)
        job_b = harness.phase(
            config, WORLD_SIZE, [Resume(None), Train(1), Save()], may_fail={0, 1, 2}
        )
        verdict.check(
            "RUN-8",
            _entries(run_dir) == before,
            f"job B changed the run held by job A {where}: "
            f"{sorted(set(_entries(run_dir).items()) ^ set(before.items()))[:5]}",
        )
        verdict.check("RUN-8", not job_b.missing, f"job B did not finish:\n{job_b.describe()}")
        for rank, rank_result in sorted(job_b.ranks.items()):
            errors = [a.error for a in rank_result.actions if a.error is not None]
            verdict.check(
                "RUN-8",
                bool(errors) and all(e.is_checkpoint_error for e in errors),
                f"job B rank {rank}, started while job A was held {where}, was not refused with "
                f"a CheckpointError: {[e.short() for e in errors] or 'every action succeeded'}",
            )
        verdict.check("RUN-8", gate.release(), f"job A no longer waited at the gate {where}")
        return job_a.result()
    finally:
        gate.release()
        job_a.result()
        gate.close()


def _finished_intact(
    harness: Harness, verdict: Verdict, config: Any, result: PhaseResult | None, where: str
) -> None:
    """Job A, released, committed step 2 and left a valid run."""
    if result is None or not verdict.phase_completed("RUN-8", result, f"job A (held {where})"):
        return
    run_dir = harness.run_dir(config)
    steps = committed_steps(run_dir)
    verdict.check("RUN-8", 2 in steps, f"job A (held {where}) did not commit step 2: {steps}")
    errors = [f.line() for f in check_run(str(run_dir), deep=True) if f.severity.value == "error"]
    verdict.check(
        "RUN-8", not errors, f"job A's run (held {where}) does not validate: {errors[:3]}"
    )


@pytest.mark.requirement("RUN-8")
def test_second_writer_is_refused(harness: Harness, verdict: Verdict) -> None:
    """Job A saves step 1 and is held while it holds the run, first between adapter calls, then
    (on fresh runs) inside its save of step 2 at the start of each of its parts; job B, started
    on the same run meanwhile, must fail on every rank with a CheckpointError and change nothing;
    A then finishes intact (step 2 committed, the run valid)."""
    keep = {"keep_last": 1} if "retention" in harness.capabilities else {}
    config = harness.config(**keep)
    first = [Resume(None), Train(1), Save()]
    gate = Gate(harness.new_dir("gate"))
    between = "between adapter calls"
    result = _held_writer(
        harness,
        verdict,
        config,
        [*first, Hold(str(gate.directory)), Train(1), Save(Fault("count"))],
        gate,
        between,
    )
    _finished_intact(harness, verdict, config, result, between)
    if result is None or 0 not in result.results(5):
        verdict.conclude()
    for part, k in _save_parts(list(result.results(5)[0].mutations), 2).items():
        config = harness.config(**keep)
        gate = Gate(harness.new_dir("gate"))
        where = f"in its save of step 2 at the {part} (mutation {k})"
        held = Save(Fault("hold", 0, k, gate=str(gate.directory)))
        result = _held_writer(harness, verdict, config, [*first, Train(1), held], gate, where)
        _finished_intact(harness, verdict, config, result, where)
    verdict.conclude()
