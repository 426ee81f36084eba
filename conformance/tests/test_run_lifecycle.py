"""Run-level behaviour across restarts: best in either mode, with or without ``min_delta`` (RUN-4),
retention with and without best (RUN-5), idempotent restart (RESUME-7)."""

from __future__ import annotations

import pytest

from ckptspec.conformance.checks import Verdict
from ckptspec.conformance.harness import Harness, file_tree
from ckptspec.conformance.phase import Evaluate, Fit, PhaseResult, Resume, Save, Train
from ckptspec.conformance.scenarios import metric_name
from ckptspec.conformance.strategies import (
    KEEP_TWO_BEST_MAX,
    LifecycleScenario,
    lifecycle_scenarios,
    replay_command,
    scenario_test,
)
from ckptspec.layout import LAYOUT

WORLD_SIZE = 2


def _leg(h: Harness, steps: int, resume: bool) -> list:  # type: ignore[type-arg]
    evaluate = Evaluate((tuple(range(h.eval_set_size)),) + ((),) * (WORLD_SIZE - 1))
    return [*([Resume(None)] if resume else []), *([Train(1), evaluate, Save()] * steps)]


def _scores(
    result: PhaseResult, metric: str, first_step: int, offset: int
) -> list[tuple[int, float]]:
    """``(step, score)`` of every evaluation of a leg (rank 0's: EVAL-2 makes them global); the
    leg's actions start at ``offset`` with one ``Train(1), Evaluate, Save`` per step."""
    scores = []
    for i in range(offset, len(result.spec.actions), 3):
        metrics = result.value(i + 1)
        scores.append((first_step + (i - offset) // 3, float(metrics[metric])))
    return scores


def expected_best(scores: list[tuple[int, float]], mode: str, min_delta: float) -> int:
    """RUN-4 applied to ``scores`` in order: the first score is the best, and a later one replaces
    it only when it improves on it by more than ``min_delta`` in ``mode``."""
    best_step, best = scores[0]
    for step, score in scores[1:]:
        if (score < best - min_delta) if mode == "min" else (score > best + min_delta):
            best_step, best = step, score
    return best_step


@pytest.mark.needs("eval", "best", "retention")
@pytest.mark.requirement("RUN-4", "RUN-5")
@scenario_test(LifecycleScenario, lifecycle_scenarios, always=[KEEP_TWO_BEST_MAX])
def test_best_and_retention_across_restart(
    harness: Harness, verdict: Verdict, scenario: LifecycleScenario
) -> None:
    """Best survives a restart and moves exactly when a score improves by more than
    ``min_delta`` in the declared mode; retention keeps what it must."""
    verdict.begin(replay_command("test_best_and_retention_across_restart", scenario))
    metric = metric_name(harness)
    total = scenario.first_leg + scenario.second_leg
    config = harness.config(
        total_steps=total,
        keep_last=scenario.keep_last,
        best_metric=metric,
        best_mode=scenario.best_mode,
        best_min_delta=scenario.min_delta,
    )
    rule = f"best_mode {scenario.best_mode}, min_delta {scenario.min_delta:g}"
    first = harness.phase(config, WORLD_SIZE, _leg(harness, scenario.first_leg, resume=False))
    if not verdict.phase_completed(
        "RUN-4", first, f"{scenario.first_leg} x (train, evaluate, save)"
    ):
        verdict.conclude()
    scores = _scores(first, metric, 1, 0)
    want = expected_best(scores, scenario.best_mode, scenario.min_delta)
    best = harness.declared.best_checkpoint(config)  # run.json's `best`, or a native trainer's own
    verdict.check(
        "RUN-4",
        best == want,
        f"with {rule} and scores {scores} the best is step {want}; the trainer records {best!r}",
    )
    second = harness.phase(config, WORLD_SIZE, _leg(harness, scenario.second_leg, resume=True))
    if not verdict.phase_completed(
        "RUN-4", second, f"restart, {scenario.second_leg} x (train, evaluate, save)"
    ):
        verdict.conclude()
    scores += _scores(second, metric, scenario.first_leg + 1, 1)
    want = expected_best(scores, scenario.best_mode, scenario.min_delta)
    best_after = harness.declared.best_checkpoint(config)
    verdict.check(
        "RUN-4",
        best_after == want,
        f"after a restart, with {rule} and scores {scores}, the best is step {want}; the trainer "
        f"records {best_after!r} (not rehydrated from run.json, or compared in another mode?)",
    )
    steps = sorted(harness.checkpoints(config))
    must_keep = (
        set(range(total - scenario.keep_last + 1, total + 1))
        | {total}
        | ({best_after} if best_after else set())
    )
    verdict.check(
        "RUN-5",
        must_keep <= set(steps),
        f"keep_last={scenario.keep_last}: committed steps {steps} lack {sorted(must_keep - set(steps))} "
        "(the N latest, the latest, the just-written and the best must be kept)",
    )
    verdict.conclude()


@pytest.mark.needs("retention")
@pytest.mark.requirement("RUN-5")
@scenario_test(LifecycleScenario, lifecycle_scenarios, always=[KEEP_TWO_BEST_MAX])
def test_retention_across_restart(
    harness: Harness, verdict: Verdict, scenario: LifecycleScenario
) -> None:
    """Retention without a best metric (so a trainer without ``best`` is judged too): after a
    restart, the ``keep_last`` highest steps, among them the latest just written, are still there."""
    verdict.begin(replay_command("test_retention_across_restart", scenario))
    total = scenario.first_leg + scenario.second_leg
    config = harness.config(total_steps=total, keep_last=scenario.keep_last)
    for leg, steps in ((1, scenario.first_leg), (2, scenario.second_leg)):
        result = harness.phase(
            config, WORLD_SIZE, [*([Resume(None)] if leg == 2 else []), *[Train(1), Save()] * steps]
        )
        if not verdict.phase_completed("RUN-5", result, f"leg {leg}: {steps} x (train, save)"):
            verdict.conclude()
    steps_kept = sorted(harness.checkpoints(config))
    must_keep = set(range(total - scenario.keep_last + 1, total + 1))
    verdict.check(
        "RUN-5",
        must_keep <= set(steps_kept),
        f"keep_last={scenario.keep_last}: after {total} saves across a restart the committed steps are "
        f"{steps_kept}, lacking {sorted(must_keep - set(steps_kept))}",
    )
    verdict.conclude()


@pytest.mark.requirement("RESUME-7")
def test_idempotent_restart(harness: Harness, verdict: Verdict) -> None:
    """fit() on a run already at its final step trains nothing and writes no checkpoint."""
    config = harness.config(total_steps=2, save_every=1)
    first = harness.phase(config, WORLD_SIZE, [Fit()])
    if not verdict.phase_completed("RESUME-7", first, "the first fit()"):
        verdict.conclude()
    run_dir = harness.run_dir(config)
    before_steps = sorted(harness.checkpoints(config))
    before = {
        k: v for k, v in file_tree(run_dir).items() if not k.startswith(LAYOUT.run_index_file)
    }
    again = harness.phase(config, WORLD_SIZE, [Fit()])
    if not verdict.phase_completed("RESUME-7", again, "fit() of a finished run"):
        verdict.conclude()
    trained = {r: len(res.value) for r, res in again.results(0).items() if res.value}
    verdict.check("RESUME-7", not trained, f"fit() of a finished run trained steps: {trained}")
    after = {k: v for k, v in file_tree(run_dir).items() if not k.startswith(LAYOUT.run_index_file)}
    verdict.check(
        "RESUME-7",
        sorted(harness.checkpoints(config)) == before_steps and after == before,
        f"fit() of a finished run wrote checkpoint files: "
        f"{sorted(set(after.items()) ^ set(before.items()))[:5]}",
    )
    verdict.conclude()
