"""Metamorphic invariants, each in fresh processes: saving is invisible (RESUME-11), the steps
after a resume are the uninterrupted run's steps (RESUME-12), and a restart is idempotent across
the run's policies (RUN-9).

Records are compared step by step, and a divergence is reported at the first step where any
part differs, naming the part: the global batch's sample ids (``samples``, the union over ranks,
so that it is comparable across world sizes), the learning rate (``LR``), the RNG state the step
draws from (``RNG``, the ``rng`` component of the full state before the step; a
:class:`~ckptspec.training.StepRecord` carries no RNG draws), then the loss. Within a step they
are checked in that order, because each later part follows from the earlier ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import pytest
from hypothesis import event

from ckptspec.conformance.adapter import ScenarioConfig
from ckptspec.conformance.checks import Verdict, component, components, diff_digests
from ckptspec.conformance.harness import Harness, file_tree
from ckptspec.conformance.phase import Evaluate, Fit, FullState, Resume, Save, Train
from ckptspec.conformance.scenarios import (
    Digests,
    Records,
    baseline,
    metric_name,
    saving_run,
    scenario_config,
    stepwise_scenario,
)
from ckptspec.conformance.strategies import (
    FINISHED_LAGGING,
    InvariantScenario,
    RestartScenario,
    invariant_scenarios,
    replay_command,
    restart_scenarios,
    scenario_test,
)
from ckptspec.layout import LAYOUT, checkpoint_dir_name

Record = tuple[int, float, float, tuple[int, ...]]


def _show_dimensions(scenario: Any) -> None:
    """One Hypothesis event per drawn dimension (``--hypothesis-show-statistics`` lists them)."""
    for name, value in asdict(scenario).items():
        event(f"{name}={value}")


def _by_step(records: Records) -> dict[int, dict[int, Record]]:
    out: dict[int, dict[int, Record]] = {}
    for rank, recs in records.items():
        for rec in recs:
            out.setdefault(rec[0], {})[rank] = tuple(rec)  # type: ignore[assignment]
    return out


def record_divergence(
    got: Records,
    want: Records,
    steps: Sequence[int],
    *,
    got_states: Mapping[int, Digests] | None = None,
    want_states: Mapping[int, Digests] | None = None,
    same_world_size: bool = True,
) -> str | None:
    """Where ``got`` first departs from ``want`` over ``steps``: ``"<part> first diverged at step
    S: ..."`` or None. ``*_states`` (step -> rank -> digests) add the RNG part, from the state at
    ``S - 1``; across world sizes only the global batch and the LR are compared (the per-rank
    split, the reduction order and, with an elastic policy, the RNG differ by design)."""
    g, w = _by_step(got), _by_step(want)
    for step in steps:
        gs, ws = g.get(step, {}), w.get(step, {})
        if not gs or not ws:
            return (
                f"step {step} first diverged: trained by ranks {sorted(gs)} here, by {sorted(ws)} in the "
                f"uninterrupted run (steps trained here: {sorted(g)})"
            )
        mine, theirs = (
            sorted(s for r in gs.values() for s in r[3]),
            sorted(s for r in ws.values() for s in r[3]),
        )
        if mine != theirs:
            return (
                f"samples first diverged at step {step}: the global batch is {mine[:12]}, the uninterrupted run's "
                f"{theirs[:12]} (repeated or foreign: {sorted(set(mine) - set(theirs))[:8]}, skipped: "
                f"{sorted(set(theirs) - set(mine))[:8]})"
            )
        lrs, lrs0 = sorted({r[2] for r in gs.values()}), sorted({r[2] for r in ws.values()})
        if lrs != lrs0:
            return f"LR first diverged at step {step}: {lrs}, the uninterrupted run {lrs0}"
        if not same_world_size:
            continue
        if (
            got_states is not None
            and want_states is not None
            and step - 1 in got_states
            and step - 1 in want_states
        ):
            for rank in sorted(set(got_states[step - 1]) | set(want_states[step - 1])):
                diff = diff_digests(
                    component(want_states[step - 1].get(rank, {}), "rng"),
                    component(got_states[step - 1].get(rank, {}), "rng"),
                )
                if diff:
                    return f"RNG first diverged at step {step}: rank {rank} draws from another RNG state: {diff}"
        losses, losses0 = {r: rec[1] for r, rec in gs.items()}, {r: rec[1] for r, rec in ws.items()}
        if losses != losses0:
            return f"loss first diverged at step {step}: {losses}, the uninterrupted run {losses0} (by rank)"
    return None


def _state_divergence(
    got: Mapping[int, Digests], want: Mapping[int, Digests], steps: Sequence[int]
) -> str | None:
    """The first step whose full state differs, with the differing components and leaves."""
    for step in steps:
        for rank in sorted(set(want.get(step, {})) | set(got.get(step, {}))):
            mine, theirs = got.get(step, {}).get(rank, {}), want.get(step, {}).get(rank, {})
            bad = sorted(
                n
                for n in components(mine) | components(theirs)
                if component(mine, n) != component(theirs, n)
            )
            if bad:
                return (
                    f"the full state first diverged after step {step} on rank {rank}, in {bad}: "
                    f"{diff_digests(theirs, mine)}"
                )
    return None


# --- RESUME-11 and RESUME-12 -------------------------------------------------------------
def _saving_is_invisible(v: Verdict, h: Harness, s: InvariantScenario, base: Any) -> None:
    """A save in the middle of a run, synchronous in ``save()`` and as ``fit()`` makes it (in the
    background for a trainer that declares ``async_save``, or always saves so), changes no later
    step and no state."""
    run = saving_run(h, s)
    if not v.require(
        "RESUME-11",
        not run.failure,
        f"the run with a save after step {s.save_step} failed:\n{run.failure}",
    ):
        return
    for rank in range(s.world_size):
        before, after = run.before_save.get(rank, {}), run.after_save.get(rank, {})
        bad = sorted(
            n
            for n in components(before) | components(after)
            if component(before, n) != component(after, n)
        )
        v.check(
            "RESUME-11",
            not bad,
            f"rank {rank}: save() at step {s.save_step} changed the live state, in {bad}: "
            f"{diff_digests(before, after)}",
        )
    later = range(s.save_step + 1, s.total_steps + 1)
    states = {s.save_step: run.after_save, **run.states}
    diverged = record_divergence(
        run.records,
        base.records,
        range(1, s.total_steps + 1),
        got_states=states,
        want_states=base.states,
    )
    v.check("RESUME-11", diverged is None, f"after a save at step {s.save_step}: {diverged}")
    diverged = _state_divergence(run.states, base.states, later)
    v.check("RESUME-11", diverged is None, f"after a save at step {s.save_step}: {diverged}")
    background = "async_save" in h.capabilities
    config = scenario_config(h, stepwise_scenario(s), h.new_dir("fit-saving")).replace(
        save_every=s.save_step, async_save=background
    )
    fit = h.phase(config, s.world_size, [Fit(), FullState()])
    what = f"fit() saving every {s.save_step} steps" + (
        " in the background (async_save)" if background else ""
    )
    if not v.phase_completed("RESUME-11", fit, what):
        return
    records = {r: list(res.value) for r, res in fit.results(0).items()}
    diverged = record_divergence(records, base.records, range(1, s.total_steps + 1))
    v.check("RESUME-11", diverged is None, f"{what}: {diverged}")
    final = {s.total_steps: {r: res.value for r, res in fit.results(1).items()}}
    diverged = _state_divergence(final, base.states, [s.total_steps])
    v.check("RESUME-11", diverged is None, f"{what}: {diverged}")


def _resume_is_equivalent(v: Verdict, h: Harness, s: InvariantScenario, base: Any) -> None:
    """Resume the checkpoint of step ``save_step`` in fresh processes, at the same world size and
    (``reshard`` + ``elastic``) at ``load_world_size``; compare every later step's record."""
    run = saving_run(h, s)
    if run.failure or not run.checkpoint:
        v.blocked("RESUME-12", "no checkpoint to resume: the run with a save failed (RESUME-11)")
        return
    later = list(range(s.save_step + 1, s.total_steps + 1))
    fork = h.fork(run.config)
    checkpoint = h.moved(run.checkpoint, run.config, fork)
    actions: list[Any] = [Resume(checkpoint), FullState()]
    for _ in later:
        actions += [Train(1), FullState()]
    result = h.phase(fork, s.world_size, actions)
    if not v.phase_completed(
        "RESUME-12", result, f"the resume at step {s.save_step}, at world size {s.world_size}"
    ):
        return
    resumed = {r: res.value for r, res in result.results(0).items()}
    v.check(
        "RESUME-12",
        set(resumed.values()) == {s.save_step},
        f"resume returned steps {resumed}, expected {s.save_step}",
    )
    records: Records = {r: [] for r in range(s.world_size)}
    states: dict[int, Digests] = (
        {}  # the RNG is restored at the first batch: compared after the first step only
        if h.deferred_restore
        else {s.save_step: {r: res.value for r, res in result.results(1).items()}}
    )
    for i, step in enumerate(later):
        for r, res in result.results(2 + 2 * i).items():
            records[r].extend(res.value)
        states[step] = {r: res.value for r, res in result.results(3 + 2 * i).items()}
    diverged = record_divergence(
        records, base.records, later, got_states=states, want_states=base.states
    )
    v.check(
        "RESUME-12",
        diverged is None,
        f"after resuming step {s.save_step} at world size {s.world_size}: {diverged}",
    )
    if not {"reshard", "elastic"} <= h.capabilities:
        return
    if run.config.global_batch_size % s.load_world_size:
        v.not_run(
            "RESUME-12",
            f"global batch {run.config.global_batch_size} does not split over {s.load_world_size} ranks",
        )
        return
    elastic = h.fork(run.config, elastic=True)
    result = h.phase(
        elastic,
        s.load_world_size,
        [Resume(h.moved(run.checkpoint, run.config, elastic)), Train(len(later))],
    )
    what = f"the elastic resume of step {s.save_step} (saved at world size {s.world_size}) at world size {s.load_world_size}"
    if not v.phase_completed("RESUME-12", result, what):
        return
    records = {r: list(res.value) for r, res in result.results(1).items()}
    diverged = record_divergence(records, base.records, later, same_world_size=False)
    v.check("RESUME-12", diverged is None, f"after {what}: {diverged}")


@pytest.mark.requirement("RESUME-11", "RESUME-12")
@scenario_test(InvariantScenario, invariant_scenarios)
def test_saving_is_invisible_and_resume_is_equivalent(
    harness: Harness, verdict: Verdict, scenario: InvariantScenario
) -> None:
    """A run that saves at step k trains exactly like one that does not (records and full states);
    resumed from that save, at the same world size and elastically at another, every later step
    trains on the uninterrupted run's global batch with its LR (and, at the same world size, the
    same RNG state and loss). One uninterrupted run, with the state after every step, serves both."""
    verdict.begin(replay_command("test_saving_is_invisible_and_resume_is_equivalent", scenario))
    _show_dimensions(scenario)
    base = baseline(harness, stepwise_scenario(scenario))
    if base.failure:
        for req in ("RESUME-11", "RESUME-12"):
            verdict.require(req, False, f"the uninterrupted run failed:\n{base.failure}")
        verdict.conclude()
    _saving_is_invisible(verdict, harness, scenario, base)
    _resume_is_equivalent(verdict, harness, scenario, base)
    verdict.conclude()


# --- RUN-9 ----------------------------------------------------------------------------------
WORLD_SIZE = 2


def _restart_config(h: Harness, s: RestartScenario) -> ScenarioConfig:
    metric = metric_name(h) if s.best else None
    return h.config(
        total_steps=s.total_steps,
        save_every=1,
        eval_every=1 if metric else 0,
        keep_last=s.keep_last,
        best_metric=metric,
        best_mode="min",
    )


def _interrupted_leg(h: Harness, s: RestartScenario, config: ScenarioConfig) -> list[Any]:
    """What ``fit()`` does up to step ``interrupted_at`` (evaluating with its contiguous shards),
    then the rewind: resume ``rewind_to``, train one step, evaluate, save."""
    half = h.eval_set_size // WORLD_SIZE
    evaluate = (
        [Evaluate((tuple(range(half)), tuple(range(half, h.eval_set_size))))]
        if config.best_metric
        else []
    )
    actions: list[Any] = [Train(1), *evaluate, Save()] * s.interrupted_at
    if s.rewind_to is not None:
        actions += [
            Resume(str(h.run_dir(config) / checkpoint_dir_name(s.rewind_to))),
            Train(1),
            *evaluate,
            Save(),
        ]
    return actions


def _damage_index(h: Harness, s: RestartScenario, config: ScenarioConfig) -> None:
    """Make ``run.json`` lag one commit behind the directories, or remove it (the start-up repairs
    it). A native trainer has no ``run.json``: nothing to damage."""
    if h.native:
        return
    path = h.run_dir(config) / LAYOUT.run_index_file
    if s.index == "missing":
        path.unlink()
    elif s.index == "lagging":
        index = json.loads(path.read_text())
        steps = sorted(h.checkpoints(config))
        index["latest_step"] = steps[-2] if len(steps) > 1 else None
        path.write_text(json.dumps(index, indent=2))


def _run_state(h: Harness, config: ScenarioConfig) -> dict[str, Any]:
    """What a restart must leave alike: the committed steps and, for a ckptspec writer, run.json
    (without its timestamps and fork ids), the `latest`/`best` links and the rewound steps."""
    state: dict[str, Any] = {"committed steps": sorted(h.checkpoints(config))}
    if h.native:
        return state
    run_dir = h.run_dir(config)
    path = run_dir / LAYOUT.run_index_file
    index = json.loads(path.read_text()) if path.is_file() else None
    if index is not None:
        index.pop("updated_at", None)
        index["rewinds"] = [
            {k: r.get(k) for k in ("resumed_from_step", "discarded_steps")}
            for r in index.get("rewinds", [])
        ]
    state["run.json"] = index
    state["links"] = {
        n: os.readlink(run_dir / n) for n in ("latest", "best") if (run_dir / n).is_symlink()
    }
    rewound = run_dir / LAYOUT.rewound_dir
    state["rewound"] = sorted(p.name for p in rewound.glob("*/step-*")) if rewound.is_dir() else []
    return state


def _files(h: Harness, config: ScenarioConfig) -> dict[str, str]:
    """Every file of every committed checkpoint, with its digest."""
    out: dict[str, str] = {}
    for step, path in h.checkpoints(config).items():
        tree = file_tree(path) if path.is_dir() else {"": file_tree(path.parent).get(path.name, "")}
        out.update({f"{step}/{rel}": digest for rel, digest in tree.items()})
    return out


def _policy_view(state: Mapping[str, Any]) -> dict[str, Any]:
    """The part of :func:`_run_state` a restarted run shares with the uninterrupted one (not the
    rewind history, nor the best score, which another eval sharding may round differently)."""
    index = state.get("run.json") or {}
    best = index.get("best") or {}
    return {
        "committed steps": state["committed steps"],
        "links": state.get("links"),
        "latest_step": index.get("latest_step"),
        "best step": best.get("step"),
        "retention": index.get("retention"),
    }


def _history(state: Mapping[str, Any]) -> dict[str, Any]:
    """The rewind history of :func:`_run_state`: a restart that resumes the latest step keeps it."""
    return {
        "rewinds": (state.get("run.json") or {}).get("rewinds"),
        "rewound": state.get("rewound"),
    }


def _differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    return "; ".join(
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    )


@pytest.mark.requirement("RUN-9")
@scenario_test(RestartScenario, restart_scenarios, always=[FINISHED_LAGGING])
def test_restart_is_idempotent(
    harness: Harness, verdict: Verdict, scenario: RestartScenario
) -> None:
    """Interrupt a run with retention/best (and a rewind, and a damaged index) at a step boundary;
    restarting its ``fit()`` ends with the uninterrupted ``fit()``'s checkpoints, links, latest and
    best, training the same records; restarting the finished run again changes nothing at all."""
    verdict.begin(replay_command("test_restart_is_idempotent", scenario))
    _show_dimensions(scenario)
    h, s = harness, scenario
    config = _restart_config(h, s)
    leg = h.phase(config, WORLD_SIZE, _interrupted_leg(h, s, config))
    if not verdict.phase_completed(
        "RUN-9", leg, f"the interrupted run ({s.interrupted_at} steps, rewind to {s.rewind_to})"
    ):
        verdict.conclude()
    history = _run_state(h, config)
    _damage_index(h, s, config)
    whole = h.phase(
        h.config(
            **{
                k: getattr(config, k)
                for k in (
                    "total_steps",
                    "save_every",
                    "eval_every",
                    "keep_last",
                    "best_metric",
                    "best_mode",
                )
            }
        ),
        WORLD_SIZE,
        [Fit()],
    )
    restart = h.phase(config, WORLD_SIZE, [Fit()])
    if not (
        verdict.phase_completed("RUN-9", whole, "the uninterrupted fit()")
        and verdict.phase_completed(
            "RUN-9", restart, f"the restart of a run interrupted at step {s.interrupted_at}"
        )
    ):
        verdict.conclude()
    first, files = _run_state(h, config), _files(h, config)
    restarted_from = s.interrupted_at if s.rewind_to is None else s.rewind_to + 1
    records = {r: list(res.value) for r, res in restart.results(0).items()}
    reference = {r: list(res.value) for r, res in whole.results(0).items()}
    diverged = record_divergence(records, reference, range(restarted_from + 1, s.total_steps + 1))
    verdict.check("RUN-9", diverged is None, f"the restart after step {restarted_from}: {diverged}")
    mine, theirs = _policy_view(first), _policy_view(_run_state(h, whole.spec.config))
    verdict.check(
        "RUN-9",
        mine == theirs,
        f"the restarted run ends unlike the uninterrupted one: {_differences(theirs, mine)}",
    )
    if not h.native:
        kept, now = _history(history), _history(first)
        verdict.check(
            "RUN-9",
            now == kept,
            f"the restart lost or changed the run's rewind history: {_differences(kept, now)}",
        )
    again = h.phase(config, WORLD_SIZE, [Fit()])
    if not verdict.phase_completed("RUN-9", again, "a second restart of the finished run"):
        verdict.conclude()
    trained = {r: [rec[0] for rec in res.value] for r, res in again.results(0).items() if res.value}
    verdict.check(
        "RUN-9", not trained, f"restarting the finished run again trained steps {trained}"
    )
    second = _run_state(h, config)
    verdict.check(
        "RUN-9",
        second == first,
        f"restarting the finished run again changed it: {_differences(first, second)}",
    )
    files_again = _files(h, config)
    changed = sorted(k for k in set(files) | set(files_again) if files.get(k) != files_again.get(k))
    verdict.check(
        "RUN-9",
        not changed,
        f"restarting the finished run again rewrote checkpoint files {changed[:5]}",
    )
    verdict.conclude()
