"""Single writer per run (RUN-8): a second job on a run that a live job holds is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ckptspec.conformance.checks import Verdict
from ckptspec.conformance.gate import Gate
from ckptspec.conformance.harness import Harness, committed_steps, file_tree
from ckptspec.conformance.phase import Hold, Resume, Save, Train
from ckptspec.layout import checkpoint_dir_name
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


@pytest.mark.requirement("RUN-8")
def test_second_writer_is_refused(harness: Harness, verdict: Verdict) -> None:
    """Job A saves step 1 and waits at a gate while holding the run; job B, started on the same
    run, must fail on every rank with a CheckpointError and change nothing; A then finishes
    intact: step 1 byte-identical, step 2 committed, the run valid."""
    config = harness.config()
    run_dir = harness.run_dir(config)
    gate = Gate(harness.new_dir("gate"))
    job_a = harness.phase_in_background(
        config,
        WORLD_SIZE,
        [Resume(None), Train(1), Save(), Hold(str(gate.directory)), Train(1), Save()],
    )
    gate.watch(job_a)
    try:
        if not gate.reached():
            verdict.check(
                "RUN-8", False, f"job A ended before it held the run:\n{job_a.result().describe()}"
            )
            verdict.conclude()
        before = _entries(run_dir)
        step_1 = file_tree(run_dir / checkpoint_dir_name(1))
        job_b = harness.phase(
            config, WORLD_SIZE, [Resume(None), Train(1), Save()], may_fail={0, 1, 2}
        )
        verdict.check(
            "RUN-8",
            _entries(run_dir) == before,
            f"job B changed the run held by job A: {sorted(set(_entries(run_dir).items()) ^ set(before.items()))[:5]}",
        )
        verdict.check("RUN-8", not job_b.missing, f"job B did not finish:\n{job_b.describe()}")
        for rank, rank_result in sorted(job_b.ranks.items()):
            errors = [a.error for a in rank_result.actions if a.error is not None]
            verdict.check(
                "RUN-8",
                bool(errors) and all(e.is_checkpoint_error for e in errors),
                f"job B rank {rank} was not refused with a CheckpointError: "
                f"{[e.short() for e in errors] or 'every action succeeded'}",
            )
        verdict.check("RUN-8", gate.release(), "job A no longer waited at the gate")
        result_a = job_a.result()
    finally:
        gate.release()
        job_a.result()
        gate.close()
    if not verdict.phase_completed("RUN-8", result_a, "job A (the first writer)"):
        verdict.conclude()
    steps = committed_steps(run_dir)
    verdict.check("RUN-8", steps == [1, 2], f"job A committed steps 1 and 2; the run holds {steps}")
    verdict.check(
        "RUN-8",
        1 not in steps or file_tree(run_dir / checkpoint_dir_name(1)) == step_1,
        "job A's step-1 checkpoint changed while job B ran",
    )
    errors = [f.line() for f in check_run(str(run_dir), deep=True) if f.severity.value == "error"]
    verdict.check("RUN-8", not errors, f"job A's run does not validate: {errors[:3]}")
    verdict.conclude()
