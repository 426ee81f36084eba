"""Shared set-ups of the conformance tests, memoised across tests and xdist workers.

Each function runs the phases of one set-up through :meth:`Harness.memo` and returns plain data
(digests, step records, the run's config). A trainer failure during a set-up is returned as
``failure`` text rather than raised, so that the test that needs the set-up can attribute it to
its own requirement.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

from ckptspec.conformance.adapter import ScenarioConfig
from ckptspec.conformance.harness import Harness
from ckptspec.conformance.phase import Evaluate, FullState, PhaseResult, Resume, Save, Train
from ckptspec.conformance.strategies import InvariantScenario, ResumeScenario, batch_size

Records = dict[int, list[tuple[int, float, float, tuple[int, ...]]]]
Digests = dict[int, dict[str, str]]


def _per_rank(result: PhaseResult, index: int) -> dict[int, Any]:
    return {r: res.value for r, res in result.results(index).items() if res.ok}


def _failed(result: PhaseResult) -> str | None:
    return None if not result.missing and not result.errors() else result.describe()


@dataclass
class Baseline:
    """The uninterrupted run: step records, and full-state digests at every cut and at the end."""

    records: Records
    states: dict[int, Digests]  # step -> rank -> digests
    failure: str | None = None


@dataclass
class Segment:
    """One resume of a split run: the state saved before it and the state right after it."""

    step: int
    saved: Digests
    resumed_step: dict[int, int] = field(default_factory=dict)
    restored: Digests = field(default_factory=dict)


@dataclass
class SplitRun:
    """The same run cut at every step of ``scenario.cuts``: save, exit, resume in fresh processes."""

    config: ScenarioConfig
    segments: list[Segment]
    records: Records  # every step trained, over all phases
    final: Digests
    failure: str | None = None


def scenario_config(h: Harness, s: ResumeScenario, where: Path) -> ScenarioConfig:
    """The config of a resume scenario (batch size divisible for its world size)."""
    return h.config(
        where,
        seed=s.seed,
        total_steps=s.total_steps,
        accumulation_steps=s.accumulation_steps,
        global_batch_size=batch_size((s.world_size,), s.accumulation_steps),
        steps_per_epoch=s.steps_per_epoch,
    )


def baseline(h: Harness, s: ResumeScenario) -> Baseline:
    """The uninterrupted run of ``s``, with full states at each cut (memoised)."""

    def compute(where: Path) -> Baseline:
        config = scenario_config(h, s, where)
        actions: list[Any] = []
        bounds = [*s.cuts, s.total_steps]
        previous = 0
        for bound in bounds:
            actions += [Train(bound - previous), FullState()]
            previous = bound
        result = h.phase(config, s.world_size, actions, nodes=s.nodes)
        records: Records = {r: [] for r in range(s.world_size)}
        states: dict[int, Digests] = {}
        for i, bound in enumerate(bounds):
            for r, recs in _per_rank(result, 2 * i).items():
                records[r].extend(recs)
            states[bound] = _per_rank(result, 2 * i + 1)
        return Baseline(records, states, _failed(result))

    return h.memo("baseline", astuple(s), compute)


def split_run(h: Harness, s: ResumeScenario) -> SplitRun:
    """``s`` cut at each of ``s.cuts`` (memoised); stops at the first phase that fails."""

    def compute(where: Path) -> SplitRun:
        config = scenario_config(h, s, where)
        run = SplitRun(config, [], {r: [] for r in range(s.world_size)}, {})
        first = h.phase(
            config, s.world_size, [Train(s.cuts[0]), FullState(), Save()], nodes=s.nodes
        )
        _extend(run.records, _per_rank(first, 0))
        run.segments.append(Segment(s.cuts[0], _per_rank(first, 1)))
        if (failure := _failed(first)) is not None:
            run.failure = f"phase 1 (train {s.cuts[0]}, save):\n{failure}"
            return run
        bounds = [*s.cuts[1:], s.total_steps]
        for n, bound in enumerate(bounds):
            last = n == len(bounds) - 1
            actions: list[Any] = [
                Resume(None),
                FullState(),
                Train(bound - run.segments[-1].step),
                FullState(),
            ]
            result = h.phase(
                config, s.world_size, actions if last else [*actions, Save()], nodes=s.nodes
            )
            segment = run.segments[-1]
            segment.resumed_step, segment.restored = _per_rank(result, 0), _per_rank(result, 1)
            _extend(run.records, _per_rank(result, 2))
            if (failure := _failed(result)) is not None:
                run.failure = f"phase {n + 2} (resume at {segment.step}):\n{failure}"
                return run
            if last:
                run.final = _per_rank(result, 3)
            else:
                run.segments.append(Segment(bound, _per_rank(result, 3)))
        return run

    return h.memo("split", astuple(s), compute)


def _extend(records: Records, new: dict[int, Any]) -> None:
    for r, recs in new.items():
        records.setdefault(r, []).extend(recs)


@dataclass
class SavedRun:
    """A run with one checkpoint after ``steps`` at ``world_size``, and the full state saved."""

    config: ScenarioConfig
    checkpoint: str
    saved: Digests
    failure: str | None = None


def saved_run(
    h: Harness,
    world_size: int,
    steps: int,
    global_batch_size: int = 12,
    keep_last: int | None = None,
) -> SavedRun:
    """Train ``steps`` at ``world_size`` and save once, with ``keep_last`` retention (memoised).
    Shared: fork before writing."""

    def compute(where: Path) -> SavedRun:
        config = h.config(
            where, total_steps=8, global_batch_size=global_batch_size, keep_last=keep_last
        )
        result = h.phase(config, world_size, [Train(steps), FullState(), Save()])
        checkpoint = result.value(2) if result.results(2).get(0) and result.results(2)[0].ok else ""
        return SavedRun(config, checkpoint, _per_rank(result, 1), _failed(result))

    key = (
        (world_size, steps, global_batch_size)
        if keep_last is None
        else (world_size, steps, global_batch_size, keep_last)
    )
    return h.memo("saved", key, compute)


def metric_name(h: Harness) -> str | None:
    """The first metric the adapter's evaluate() returns on its whole eval set (memoised), or None."""

    def compute(where: Path) -> str | None:
        result = h.phase(h.config(where), 1, [Evaluate((tuple(range(h.eval_set_size)),))])
        metrics = result.results(0).get(0)
        return (
            sorted(metrics.value)[0]
            if metrics is not None and metrics.ok and metrics.value
            else None
        )

    return (
        h.memo("metric", h.eval_set_size, compute)
        if "eval" in h.capabilities and h.eval_set_size
        else None
    )


@dataclass
class SteppedRun:
    """A run saved after each of ``saves`` single steps, evaluating the whole set before each save."""

    config: ScenarioConfig
    checkpoints: list[str]
    metrics: list[dict[str, float] | None]
    failure: str | None = None


def stepped_run(h: Harness, saves: int, world_size: int = 2, **settings: Any) -> SteppedRun:
    """``saves`` x (train 1, evaluate all, save) in one phase (memoised). Shared: fork first."""
    metric = metric_name(h)

    def compute(where: Path) -> SteppedRun:
        best = (
            {"best_metric": metric, "best_mode": "min"}
            if metric and "best" in h.capabilities
            else {}
        )
        config = h.config(where, total_steps=saves + 4, **best, **settings)
        full = _all_on_rank0(h.eval_set_size, world_size) if metric else None
        actions: list[Any] = []
        for _ in range(saves):
            actions += [Train(1), *([full] if full else []), Save()]
        result = h.phase(config, world_size, actions)
        per_save = len(actions) // saves
        checkpoints, metrics = [], []
        for i in range(saves):
            save = result.results(per_save * i + per_save - 1).get(0)
            checkpoints.append(save.value if save is not None and save.ok else "")
            ev = result.results(per_save * i + 1).get(0) if full else None
            metrics.append(ev.value if ev is not None and ev.ok else None)
        return SteppedRun(config, checkpoints, metrics, _failed(result))

    return h.memo("stepped", (saves, world_size, metric, sorted(settings.items())), compute)


def _all_on_rank0(eval_set_size: int, world_size: int) -> Evaluate:
    return Evaluate((tuple(range(eval_set_size)),) + ((),) * (world_size - 1))


# --- metamorphic invariants (RESUME-11, RESUME-12) -----------------------------------------
def stepwise_scenario(s: InvariantScenario) -> ResumeScenario:
    """The uninterrupted run of ``s`` with its full state taken after every step."""
    return ResumeScenario(s.world_size, s.total_steps, tuple(range(1, s.total_steps)), 1, s.seed)


@dataclass
class SavingRun:
    """The run of ``stepwise_scenario(s)`` with one save after ``s.save_step``, in one process:
    full states right before and right after the save, then after every later step."""

    config: ScenarioConfig
    checkpoint: str
    records: Records
    before_save: Digests
    after_save: Digests
    states: dict[int, Digests]  # step -> rank -> digests, for every step after the save
    failure: str | None = None


def saving_run(h: Harness, s: InvariantScenario) -> SavingRun:
    """Train ``s.save_step``, save, train to the end, digesting the state around the save and
    after each step (memoised). Shared: fork before writing."""

    def compute(where: Path) -> SavingRun:
        config = scenario_config(h, stepwise_scenario(s), where)
        later = range(s.save_step + 1, s.total_steps + 1)
        actions: list[Any] = [Train(s.save_step), FullState(), Save(), FullState()]
        for _ in later:
            actions += [Train(1), FullState()]
        result = h.phase(config, s.world_size, actions)
        save = result.results(2).get(0)
        records: Records = {r: [] for r in range(s.world_size)}
        _extend(records, _per_rank(result, 0))
        states: dict[int, Digests] = {}
        for i, step in enumerate(later):
            _extend(records, _per_rank(result, 4 + 2 * i))
            states[step] = _per_rank(result, 5 + 2 * i)
        return SavingRun(
            config,
            save.value if save is not None and save.ok else "",
            records,
            _per_rank(result, 1),
            _per_rank(result, 3),
            states,
            _failed(result),
        )

    return h.memo("saving", astuple(s), compute)
