"""Bit-exact continuation across resumes in fresh processes (RESUME-1, -4, -8, -9; DIGEST-1).

Also: a save asked for in the middle of an accumulation cycle (RESUME-9).

Attribution: the state right after each resume is compared with the state saved, component by
component (model/optimizer/lr_scheduler: RESUME-1, rng: RESUME-8, data_position: RESUME-4).
The continuation (losses, learning rates, samples, final state) is judged only when every
restore matched; otherwise it is *blocked*, so an RNG bug is reported as RESUME-8, not also as
RESUME-1.
"""

from __future__ import annotations

from typing import Any

import pytest

from ckptspec.conformance.checks import Verdict, component, components, diff_digests
from ckptspec.conformance.harness import Harness
from ckptspec.conformance.phase import FullState, PhaseResult, Resume, Save, Train, TrainMicro
from ckptspec.conformance.scenarios import (
    Baseline,
    SplitRun,
    baseline,
    saved_run,
    scenario_config,
    split_run,
)
from ckptspec.conformance.strategies import (
    ResumeScenario,
    batch_size,
    replay_command,
    resume_scenarios,
    scenario_test,
)

RESTORE_REQUIREMENT = {"rng": "RESUME-8", "data_position": "RESUME-4"}  # everything else: RESUME-1
REPLICATED = ("model", "optimizer", "lr_scheduler")


def _restore_checks(
    v: Verdict, base: Baseline, run: SplitRun, s: ResumeScenario, deferred: frozenset[str]
) -> bool:
    """Compare each saved state with the baseline and each restored state with the saved one
    (but the ``deferred`` components, which the continuation checks compare after a step)."""
    ok = True
    for seg in run.segments:
        for rank in range(s.world_size):
            expected = base.states.get(seg.step, {}).get(rank, {})
            saved = seg.saved.get(rank, {})
            ok &= v.check(
                "RESUME-1",
                saved == expected,
                f"rank {rank}: state before the save at step {seg.step} differs from the uninterrupted "
                f"run with the same config (non-deterministic trainer): {diff_digests(expected, saved)}",
            )
            if rank not in seg.restored:
                continue
            ok &= v.check(
                "RESUME-1",
                seg.resumed_step.get(rank) == seg.step,
                f"rank {rank}: resume returned step {seg.resumed_step.get(rank)}, expected {seg.step}",
            )
            for name in sorted((components(saved) | components(seg.restored[rank])) - deferred):
                diff = diff_digests(component(saved, name), component(seg.restored[rank], name))
                ok &= v.check(
                    RESTORE_REQUIREMENT.get(name, "RESUME-1"),
                    not diff,
                    f"rank {rank}: `{name}` after resuming at step {seg.step} differs from what was saved: {diff}",
                )
    return ok


def _continuation_checks(
    v: Verdict, base: Baseline, run: SplitRun, s: ResumeScenario, trajectory_req: str
) -> None:
    """Losses, learning rates, samples and final state of the resumed run against the baseline."""
    for rank in range(s.world_size):
        got, want = run.records.get(rank, []), base.records.get(rank, [])
        for (step, loss, lr, _), (_, loss0, lr0, _) in zip(got, want):
            if not v.check(
                trajectory_req,
                (loss, lr) == (loss0, lr0),
                f"rank {rank} step {step}: loss/lr {loss!r}/{lr!r}, uninterrupted run {loss0!r}/{lr0!r}",
            ):
                break
        for (step, _, _, samples), (_, _, _, samples0) in zip(got, want):
            if not v.check(
                "RESUME-4",
                samples == samples0,
                f"rank {rank} step {step}: consumed samples {list(samples)[:8]}, uninterrupted run "
                f"{list(samples0)[:8]} (skipped: {sorted(set(samples0) - set(samples))[:8]}, "
                f"repeated: {sorted(set(samples) - set(samples0))[:8]})",
            ):
                break
        v.check(
            trajectory_req,
            len(got) == len(want),
            f"rank {rank}: {len(got)} steps trained, expected {len(want)}",
        )
        final, final0 = run.final.get(rank, {}), base.states[s.total_steps].get(rank, {})
        for name in sorted(components(final) | components(final0)):
            diff = diff_digests(component(final0, name), component(final, name))
            req = (
                "RESUME-4"
                if name == "data_position"
                else "RESUME-8"
                if name == "rng"
                else trajectory_req
            )
            v.check(
                req,
                not diff,
                f"rank {rank}: final `{name}` differs from the uninterrupted run: {diff}",
            )


DIVERGENCE_ORDER = (
    ("rng", "the RNG state"),
    ("data_position", "the data position"),
    ("optimizer", "the optimizer state"),
    ("lr_scheduler", "the LR scheduler"),
    ("model", "the model"),
)
"""The parts of the state in the order one causes the next to diverge: a wrong RNG draws other
data or dropout, other data gives other gradients, and the optimizer then moves the model."""


def _diverges(base: Baseline, run: SplitRun, s: ResumeScenario) -> bool:
    """Whether the resumed run's losses, learning rates or final model/optimizer differ from the baseline."""
    for rank in range(s.world_size):
        got, want = run.records.get(rank, []), base.records.get(rank, [])
        if [r[1:3] for r in got] != [r[1:3] for r in want]:
            return True
        final, final0 = run.final.get(rank, {}), base.states[s.total_steps].get(rank, {})
        if any(
            component(final, n) != component(final0, n)
            for n in components(final) | components(final0)
            if n not in RESTORE_REQUIREMENT
        ):
            return True
    return False


def _first_divergence(h: Harness, s: ResumeScenario, run: SplitRun) -> str:
    """Which part of the state first diverged from the uninterrupted run, and at which step: the
    last checkpoint of ``run`` is resumed again (in a copy) and digested after every step, next to
    the uninterrupted run digested after every step; within a step the parts are named in
    :data:`DIVERGENCE_ORDER`, data order (the samples a step consumed) right after the RNG."""
    cut = run.segments[-1].step
    stepwise = baseline(
        h,
        ResumeScenario(
            s.world_size,
            s.total_steps,
            tuple(range(1, s.total_steps)),
            s.accumulation_steps,
            s.seed,
            s.steps_per_epoch,
            s.nodes,
        ),
    )
    if stepwise.failure:
        return ""
    actions: list[Any] = [Resume(None)]
    for _ in range(cut, s.total_steps):
        actions += [Train(1), FullState()]
    result = h.phase(h.fork(run.config), s.world_size, actions, nodes=s.nodes)
    for i, step in enumerate(range(cut + 1, s.total_steps + 1)):
        for rank in range(s.world_size):
            records, state = (
                result.results(1 + 2 * i).get(rank),
                result.results(2 + 2 * i).get(rank),
            )
            if records is None or not records.ok or state is None or not state.ok:
                return f"(rerunning the resume from step {cut} to find the first divergence failed:\n{result.describe()})"
            want = [r for r in stepwise.records.get(rank, []) if r[0] == step]
            expected = stepwise.states.get(step, {}).get(rank, {})
            parts = []
            for name, what in DIVERGENCE_ORDER:
                if (
                    name == "data_position"
                    and want
                    and tuple(records.value[0][3]) != tuple(want[0][3])
                ):
                    parts.append("the data order (samples consumed)")
                if diff := diff_digests(
                    component(expected, name), component(state.value, name), limit=2
                ):
                    parts.append(f"{what} ({', '.join(diff)})")
            if parts:
                return (
                    f"after resuming at step {cut}, the state first diverged at step {step} on rank {rank}: "
                    f"{parts[0]}" + (f"; then also {', '.join(parts[1:])}" if parts[1:] else "")
                )
    return ""


def _judge(v: Verdict, h: Harness, s: ResumeScenario, trajectory_req: str) -> None:
    base = baseline(h, s)
    if base.failure:
        v.check("RESUME-1", False, f"the uninterrupted run failed:\n{base.failure}")
        return
    run = split_run(h, s)
    restored = _restore_checks(v, base, run, s, h.deferred_restore)
    if run.failure:
        v.check("RESUME-1", False, f"the interrupted run failed in {run.failure}")
    elif restored:
        if _diverges(base, run, s) and (where := _first_divergence(h, s, run)):
            v.check(trajectory_req, False, where)
        _continuation_checks(v, base, run, s, trajectory_req)
    else:
        for req in sorted({trajectory_req, "RESUME-4"} - {r for r in v.outcomes if v.failed(r)}):
            v.blocked(req, "the continuation was not compared because a restore check failed")


@pytest.mark.requirement("RESUME-1", "RESUME-4", "RESUME-8")
@scenario_test(ResumeScenario, lambda: resume_scenarios(accumulation=False))
def test_bit_exact_resume(harness: Harness, verdict: Verdict, scenario: ResumeScenario) -> None:
    """Cut a run at drawn steps; every later step and the final state equal the uninterrupted run."""
    verdict.begin(replay_command("test_bit_exact_resume", scenario))
    _judge(verdict, harness, scenario, "RESUME-1")
    verdict.conclude()


@pytest.mark.needs("accumulation")
@pytest.mark.requirement("RESUME-9", "RESUME-1", "RESUME-4", "RESUME-8")
@scenario_test(ResumeScenario, lambda: resume_scenarios(accumulation=True))
def test_bit_exact_resume_with_accumulation(
    harness: Harness, verdict: Verdict, scenario: ResumeScenario
) -> None:
    """As above with accumulation: a continuation that diverges only with accumulation is RESUME-9.

    When it diverges, the same cut without accumulation is run too: if that diverges as well,
    the failure is RESUME-1's and RESUME-9 is blocked.
    """
    verdict.begin(replay_command("test_bit_exact_resume_with_accumulation", scenario))
    _judge(verdict, harness, scenario, "RESUME-9")
    if verdict.failed("RESUME-9"):
        plain = Verdict(requirements=("RESUME-1", "RESUME-4", "RESUME-8"))
        _judge(
            plain,
            harness,
            ResumeScenario(
                scenario.world_size, scenario.total_steps, scenario.cuts, 1, scenario.seed
            ),
            "RESUME-1",
        )
        if plain.failed("RESUME-1"):
            verdict.outcomes["RESUME-9"] = "blocked"
            verdict.check(
                "RESUME-1",
                False,
                "the continuation also diverges without accumulation: "
                + "; ".join(plain.messages.get("RESUME-1", [])[:2]),
            )
    verdict.conclude()


MID_CYCLE = ResumeScenario(world_size=2, total_steps=4, cuts=(2,), accumulation_steps=3, seed=0)


def _matches_baseline(
    v: Verdict, base: Baseline, result: PhaseResult, train: int, final: int, what: str
) -> None:
    """Records of action ``train`` (the last two steps) and the state of action ``final`` equal the uninterrupted run's."""
    for rank in range(MID_CYCLE.world_size):
        got = result.results(train).get(rank)
        want = base.records.get(rank, [])[MID_CYCLE.cuts[0] :]
        v.check(
            "RESUME-9",
            got is not None and got.ok and list(got.value) == want,
            f"rank {rank}: steps after {what} differ from the uninterrupted run: "
            f"{got.value if got is not None and got.ok else got}, expected {want}",
        )
        state = result.results(final).get(rank)
        expected = base.states.get(MID_CYCLE.total_steps, {}).get(rank, {})
        v.check(
            "RESUME-9",
            state is not None and state.ok and state.value == expected,
            f"rank {rank}: final state after {what} differs from the uninterrupted run: "
            f"{diff_digests(expected, state.value if state is not None and state.ok else {})}",
        )


@pytest.mark.needs("accumulation", "micro_steps")
@pytest.mark.requirement("RESUME-9")
def test_save_mid_accumulation(harness: Harness, verdict: Verdict) -> None:
    """A save between the micro-batches of one optimizer step is refused with nothing changed,
    or resumes bit-exactly; either way the live run continues exactly as if never asked."""
    s = MID_CYCLE
    base = baseline(harness, s)
    if not verdict.require(
        "RESUME-9", not base.failure, f"the uninterrupted run failed:\n{base.failure}"
    ):
        verdict.conclude()
    config = scenario_config(harness, s, harness.new_dir("mid-cycle"))
    cut = s.cuts[0]
    live = harness.phase(
        config,
        s.world_size,
        [Train(cut), TrainMicro(1), Save(), Train(s.total_steps - cut), FullState()],
        may_fail={2},
    )
    if not verdict.check(
        "RESUME-9",
        not live.missing and all(name == "save" for _, name, _ in live.errors()),
        f"training around the mid-cycle save did not complete:\n{live.describe()}",
    ):
        verdict.conclude()
    saves = live.results(2)
    refused = {r: res.error for r, res in saves.items() if res.error is not None}
    what = f"a save after step {cut} plus 1 of {s.accumulation_steps} micro-batches"
    if refused:
        verdict.check(
            "RESUME-9",
            len(refused) == s.world_size,
            f"{what} failed on ranks {sorted(refused)} only; a save succeeds or fails on every rank",
        )
        for rank, error in sorted(refused.items()):
            verdict.check(
                "RESUME-9",
                error.is_checkpoint_error,
                f"rank {rank}: {what} refused with {error.short()}, not a CheckpointError or a declared refusal",
            )
        left = sorted(harness.checkpoints(config))
        verdict.check(
            "RESUME-9", left == [], f"{what} was refused but left committed checkpoints {left}"
        )
        _matches_baseline(verdict, base, live, 3, 4, f"the refused {what}")
        verdict.conclude()
        return
    _matches_baseline(verdict, base, live, 3, 4, f"{what} (committed)")
    fork = harness.fork(config)
    checkpoint = harness.moved(live.value(2), config, fork)
    resumed = harness.phase(
        fork, s.world_size, [Resume(checkpoint), Train(s.total_steps - cut), FullState()]
    )
    if verdict.phase_completed("RESUME-9", resumed, f"the resume from {what}"):
        _matches_baseline(verdict, base, resumed, 1, 2, f"resuming from {what}")
    verdict.conclude()


EPOCHS = ResumeScenario(
    world_size=2, total_steps=8, cuts=(4,), accumulation_steps=1, seed=0, steps_per_epoch=3
)
"""Cut one step into the second epoch; the continuation runs through the third epoch's start."""


@pytest.mark.needs("epochs")
@pytest.mark.requirement("RESUME-4", "RESUME-1", "RESUME-8")
def test_bit_exact_resume_across_epochs(harness: Harness, verdict: Verdict) -> None:
    """With 3-step epochs, a resume mid-epoch continues bit-exactly through the next epoch
    boundary: the data position must not leak into later epochs (e.g. a skip of the consumed
    prefix that is never removed)."""
    verdict.begin(None)
    _judge(verdict, harness, EPOCHS, "RESUME-1")
    verdict.conclude()


TWO_NODES = ResumeScenario(
    world_size=4, total_steps=3, cuts=(1,), accumulation_steps=1, seed=0, nodes=2
)
"""Two nodes of two ranks each (every profile): ``LOCAL_RANK`` 0 and 1 repeat on both nodes, so
per-node and per-group state (a node's ranks, a shard group, files named by local rank) meets
two groups of more than one rank."""


@pytest.mark.needs("multi_node")
@pytest.mark.requirement("RESUME-1", "RESUME-4", "RESUME-8")
def test_bit_exact_resume_on_two_nodes(harness: Harness, verdict: Verdict) -> None:
    """Launched as two nodes of two ranks on localhost (two elastic agents, each with its own
    ``LOCAL_RANK`` space), a cut run resumes bit-exactly: state keyed by the local rank instead of the global
    one (a file name, a device index) is the same key on both nodes, which a single-node launch,
    where the two coincide, cannot show."""
    verdict.begin(None)
    _judge(verdict, harness, TWO_NODES, "RESUME-1")
    verdict.conclude()


@pytest.mark.needs("accumulation", "grad_sync")
@pytest.mark.requirement("RESUME-10")
def test_deferred_grad_sync_matches_every_micro_step(harness: Harness, verdict: Verdict) -> None:
    """Accumulating with the gradient sync deferred to the last micro-batch trains like syncing
    on every micro-batch: the same samples and learning rates, losses equal to a relative 1e-4
    (the cross-rank sum is associated differently, so not bitwise), and one model on every rank."""
    steps = 4
    runs = {}
    for defer in (True, False):
        config = harness.config(
            total_steps=steps,
            accumulation_steps=2,
            global_batch_size=batch_size((2,), 2),
            defer_grad_sync=defer,
        )
        runs[defer] = harness.phase(config, 2, [Train(steps), FullState()])
        if not verdict.phase_completed(
            "RESUME-10", runs[defer], f"training with defer_grad_sync={defer}"
        ):
            verdict.conclude()
    for rank in range(2):
        deferred, every = runs[True].value(0, rank), runs[False].value(0, rank)
        for (step, loss, lr, samples), (_, loss0, lr0, samples0) in zip(deferred, every):
            close = abs(loss - loss0) <= 1e-4 * abs(loss0) and lr == lr0 and samples == samples0
            if not verdict.check(
                "RESUME-10",
                close,
                f"rank {rank} step {step}: deferred sync gives loss {loss!r}, lr {lr!r}; "
                f"syncing every micro-batch gives {loss0!r}, {lr0!r}",
            ):
                break
    for defer, result in runs.items():
        models = {rank: component(result.value(1, rank), "model") for rank in range(2)}
        verdict.check(
            "RESUME-10",
            models[0] == models[1],
            f"defer_grad_sync={defer}: the full model differs between ranks 0 and 1: {diff_digests(models[0], models[1])}",
        )
    verdict.conclude()


@pytest.mark.requirement("DIGEST-1")
def test_full_state_is_canonical(harness: Harness, verdict: Verdict) -> None:
    """full_state() has every component, digests canonically on every rank, and is full (not sharded)."""
    saved = saved_run(harness, 2, 1)
    states = saved.saved
    verdict.check(
        "DIGEST-1",
        not saved.failure and len(states) == 2,
        f"full_state() could not be digested with the canonical digest:\n{saved.failure}",
    )
    for rank, digests in states.items():
        missing = sorted(
            {"model", "optimizer", "lr_scheduler", "rng", "data_position"} - components(digests)
        )
        verdict.check("DIGEST-1", not missing, f"rank {rank}: full_state() lacks {missing}")
    if len(states) == 2:
        for name in REPLICATED:
            diff = diff_digests(component(states[0], name), component(states[1], name))
            verdict.check(
                "DIGEST-1",
                not diff,
                f"`{name}` differs between ranks 0 and 1 (not a full state?): {diff}",
            )
    verdict.conclude()
