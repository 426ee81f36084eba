"""Power loss: the states a crash of the machine may leave, not only those of a killed process (COMMIT-5).

A SIGKILL keeps the page cache, so a writer that forgets an fsync passes every kill test. Here
the save that follows a committed checkpoint (in a run with the drawn retention, synchronously or
in the background) runs with a journal of every rank's file-system operations
(:mod:`ckptspec.conformance.faults`), either to its end (the save returned: it must be durable)
or until a SIGKILL at a drawn crash point. From the journal, :mod:`ckptspec.conformance.crash_states`
builds power-loss states in a copy of the run: the *worst* one (every non-durable operation
undone, every unsynced file cut) and one with a few non-durable effects drawn by Hypothesis
(undone, cut or torn). In each, the newest durably committed checkpoint must be the one the
trainer's own discovery finds, and a fresh resume must restore exactly what a fault-free resume
of it restores; the checkpoint committed before the save must be byte-for-byte intact, unless
retention removed it and the new one is committed in that state. For a
ckptspec writer, every committed checkpoint must validate and ``run.json`` must name a committed
step (it may lag behind a commit, as after a kill).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event
from hypothesis import strategies as st

from ckptspec.conformance import options
from ckptspec.conformance.adapter import ScenarioConfig
from ckptspec.conformance.checks import Verdict, diff_digests
from ckptspec.conformance.crash_states import Choice, CrashModel
from ckptspec.conformance.faults import read_journal
from ckptspec.conformance.harness import Harness, file_tree
from ckptspec.conformance.phase import Fault, FullState, Mutation, Resume, Save, Train
from ckptspec.conformance.scenarios import SavedRun, saved_run
from ckptspec.conformance.strategies import replay_command, save_policies, scenario_test
from ckptspec.conformance.validation import error_findings
from ckptspec.layout import LAYOUT

WORLD_SIZE = 2
REQ = "COMMIT-5"
Digests = dict[int, dict[str, str]]


@dataclass(frozen=True)
class PowerLossScenario:
    """Save at ``steps_before`` in a run with ``keep_last`` retention, train ``steps_between``,
    save under a journal (in the background with ``async_save``): to its end, and killed at each
    of ``kill_points`` (fractions of the save's fsyncs); then lose the ``choices`` (fractions of
    the non-durable effects) besides the worst state. A trainer that saves both ways also has its
    returned save in the other mode checked at every fsync."""

    steps_before: int
    steps_between: int
    kill_points: tuple[float, ...]
    choices: tuple[float, ...]
    keep_last: int | None = None
    async_save: bool = False


def _fractions(count: int) -> Any:
    return st.lists(st.floats(0, 1, exclude_max=True), min_size=count, max_size=count).map(
        lambda f: tuple(sorted(f))
    )


@st.composite
def power_loss_scenarios(draw: Any) -> PowerLossScenario:
    quick = options.current().profile.name == "quick"
    steps = st.just(1) if quick else st.integers(1, 2)
    kills = draw(_fractions(1 if quick else 3))
    choices = draw(st.integers(1, 3).flatmap(_fractions))
    keep_last, async_save = draw(save_policies())
    event(
        f"power loss x retention x mode: keep_last {keep_last}, "
        f"{'asynchronous' if async_save else 'synchronous'} save drawn"
    )
    return PowerLossScenario(draw(steps), draw(steps), kills, choices, keep_last, async_save)


@dataclass
class _Journaled:
    """A save run under a journal: its run, journal and mutations, and a fault-free resume of it."""

    config: ScenarioConfig
    journal: str
    logs: dict[int, list[Mutation]]
    restored: Digests
    failure: str = ""


def _restored(h: Harness, config: ScenarioConfig) -> Digests:
    """Per rank, the state a fault-free resume of the latest checkpoint of ``config``'s run restores."""
    result = h.phase(h.fork(config), WORLD_SIZE, [Resume(None), FullState()])
    return {r: res.value for r, res in result.results(1).items() if res.ok}


def _journaled_save(
    h: Harness,
    saved: SavedRun,
    between: int,
    kill: tuple[int, int] | None,
    async_save: bool,
    restore: bool = True,
) -> _Journaled:
    """Resume ``saved``, train ``between`` steps and save (in the background with ``async_save``)
    under a journal, killing rank ``kill[0]`` before its mutation ``kill[1]`` when given (a
    fault-free save is memoised: shared, read only), and (``restore``) resume it fault-free."""

    def run(where: Path | None) -> _Journaled:
        config = h.fork(saved.config, async_save=async_save)
        journal = (where or h.new_dir("journal")) / "journal"
        fault = (
            Fault("count", journal=str(journal))
            if kill is None
            else Fault("kill", *kill, journal=str(journal))
        )
        result = h.phase(config, WORLD_SIZE, [Resume(None), Train(between), Save(fault)])
        logs = {r: list(res.mutations) for r, res in result.results(2).items()}
        if kill is not None:
            return _Journaled(
                config, str(journal), logs, {}, "" if kill[0] in result.missing else "did not land"
            )
        if result.missing or result.errors():
            return _Journaled(config, str(journal), logs, {}, result.describe())
        return _Journaled(config, str(journal), logs, _restored(h, config) if restore else {})

    return (
        h.memo("power-loss-save", (saved.config.output_dir, between, async_save, restore), run)
        if kill is None
        else run(None)
    )


def _tree(path: Path) -> dict[str, str]:
    if path.is_dir():
        return file_tree(path)
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()} if path.is_file() else {}


def _model(saved: SavedRun, crashed: _Journaled) -> CrashModel:
    """The power-loss states of ``crashed``: from the run before the save to the run it left."""
    return CrashModel(
        Path(saved.config.output_dir),
        Path(crashed.config.output_dir),
        Path(crashed.journal),
        read_journal(crashed.journal),
    )


def _states(
    model: CrashModel, fractions: tuple[float, ...], worst: bool = True
) -> list[list[Choice]]:
    """The worst state (when ``worst``) and the drawn one, each once."""
    states = [model.worst()] if worst else []
    drawn = model.pick(fractions)
    return states + [drawn] if drawn not in states else states


def _judge(
    h: Harness,
    v: Verdict,
    saved: SavedRun,
    model: CrashModel,
    choices: list[Choice],
    where: str,
    expected: dict[int, Digests],
    durable_step: int | None,
    resume: bool = True,
    retention: bool = False,
) -> None:
    """Build the power-loss state of ``model`` that loses ``choices`` and check it: the earlier
    checkpoint intact (or, with ``retention``, removed once the new one is committed),
    ``durable_step`` (when the save returned) committed, the run valid, and (when ``resume``) a
    resume of latest restoring one of ``expected`` exactly."""
    target = h.new_dir("power-loss") / "out"
    model.build(target, choices)
    config = saved.config.replace(output_dir=str(target))
    what = f"{where}, then a power loss losing {len(choices)} non-durable effect(s): {[str(c) for c in choices][:6]}"
    if not choices and model.end is None:  # all durable: the crash state itself, file for file
        v.check(
            REQ,
            file_tree(target) == file_tree(Path(model.after)),
            f"after {where} the power-loss state that loses nothing differs from the crash state",
        )
    step_a, step_b = min(expected), max(expected)
    old = h.checkpoints(saved.config)[step_a]
    committed = h.checkpoints(config)
    if not (retention and step_a not in committed and step_b in committed):
        v.check(
            REQ,
            _tree(Path(h.moved(str(old), saved.config, config))) == _tree(old),
            f"after {what} the checkpoint of step {step_a} committed before the save was lost or changed"
            + (f" (step {step_b} is not committed)" if retention else ""),
        )
    if durable_step is not None:
        v.check(
            REQ,
            durable_step in committed,
            f"after {what} the checkpoint of step {durable_step}, whose save had returned, is not committed "
            f"(committed: {sorted(committed)})",
        )
    if not h.native:
        for path in committed.values():
            findings = error_findings(path)
            v.check(
                REQ,
                not findings,
                f"after {what} the committed {path.name} does not validate: {findings[:3]}",
            )
        # run.json may lag behind a commit (it is rebuilt from the directories), never run ahead
        index = h.run_dir(config) / LAYOUT.run_index_file
        try:
            latest = json.loads(index.read_text()).get("latest_step")
        except (OSError, ValueError) as exc:
            latest = f"unreadable ({exc})"
        v.check(
            REQ,
            isinstance(latest, int) and latest in committed and latest >= step_a,
            f"after {what} {LAYOUT.run_index_file} names latest step {latest!r}; committed: {sorted(committed)}",
        )
    if not resume or (not choices and model.end is None):
        return  # resuming the crash state itself is COMMIT-2's check (and the fault-free resume's)
    resumed = h.phase(config, WORLD_SIZE, [Resume(None), FullState()])
    if not v.check(
        REQ,
        not resumed.missing and not resumed.errors(),
        f"after {what} resuming latest failed:\n{resumed.describe()}",
    ):
        return
    step, newest = (
        resumed.value(0),
        max(s for s in committed if s in expected) if set(committed) & set(expected) else step_a,
    )
    if not v.check(
        REQ,
        step == newest,
        f"after {what} latest resumed at step {step}; the newest committed checkpoint is step {newest}",
    ):
        return
    for r in range(WORLD_SIZE):
        diff = diff_digests(expected[step].get(r, {}), resumed.value(1, r))
        v.check(
            REQ,
            not diff,
            f"after {what} rank {r} resumed at {step} with a state unlike a fault-free resume of it: {diff}",
        )


def _persistence_points(model: CrashModel) -> list[int]:
    """The journal index of every fsync (of a file or a directory) of the save: a power loss just
    before one loses the most that the save has not yet made durable."""
    return [i for i, e in enumerate(model.entries) if e.op == "sync"]


def _kill_points(
    logs: dict[int, list[Mutation]], fractions: tuple[float, ...]
) -> list[tuple[int, int, Mutation]]:
    """The mutations at ``fractions`` of the save's fsyncs (of all its mutations if it makes
    none): a kill just before a persistence point leaves the most that is not yet durable."""
    every = [(r, k, m) for r in sorted(logs) for k, m in enumerate(logs[r], start=1)]
    every = [p for p in every if p[2].op in ("fsync", "fdatasync")] or every
    return sorted(
        {every[min(len(every) - 1, int(f * len(every)))] for f in fractions} if every else set(),
        key=lambda p: (p[0], p[1]),
    )


@pytest.mark.requirement("COMMIT-5")
@scenario_test(PowerLossScenario, power_loss_scenarios, max_examples=1)
def test_power_loss_during_save(
    harness: Harness, verdict: Verdict, scenario: PowerLossScenario
) -> None:
    """Power-loss states of a returned save and of a killed one: the newest durable checkpoint resumes exactly."""
    verdict.begin(replay_command("test_power_loss_during_save", scenario))
    saved = saved_run(harness, WORLD_SIZE, scenario.steps_before, keep_last=scenario.keep_last)
    if not verdict.require(
        REQ, not saved.failure, f"could not produce the first checkpoint:\n{saved.failure}"
    ):
        verdict.conclude()
    step_a, step_b = scenario.steps_before, scenario.steps_before + scenario.steps_between
    restored_a = harness.memo(
        "restored", saved.config.output_dir, lambda _: _restored(harness, saved.config)
    )
    # The drawn mode in full; the other one (a trainer that saves both ways) at every fsync.
    modes = [scenario.async_save] + (
        [not scenario.async_save] if "async_save" in harness.capabilities else []
    )
    for async_save in modes:
        drawn = async_save == scenario.async_save
        done = _journaled_save(harness, saved, scenario.steps_between, None, async_save, drawn)
        if not verdict.require(
            REQ, not done.failure, f"the save failed without a fault:\n{done.failure}"
        ):
            verdict.conclude()
        expected = {step_a: restored_a, step_b: done.restored}  # the other mode resumes nothing
        for step, state in expected.items():
            if (drawn or step == step_a) and not verdict.require(
                REQ,
                len(state) == WORLD_SIZE,
                f"a fault-free resume of the step-{step} checkpoint failed",
            ):
                verdict.conclude()
        mode = " (an asynchronous save)" if async_save else ""
        judge = partial(_judge, harness, verdict, saved, retention=scenario.keep_last is not None)
        returned = _model(saved, done)
        for choices in _states(returned, scenario.choices):
            judge(
                returned,
                choices,
                f"the save of step {step_b}{mode} returned",
                expected,
                step_b,
                resume=drawn,
            )
        points = _persistence_points(returned)
        resumed_at = {  # none for a trainer that never fsyncs: the returned save's states say it all
            points[min(len(points) - 1, int(f * len(points)))]
            for f in scenario.kill_points
            if points and drawn
        }
        for end in points:
            entry = returned.entries[end]
            earlier = returned.at(end)
            judge(
                earlier,
                earlier.worst(),
                f"the save of step {step_b}{mode} until just before rank {entry.rank}'s fsync of "
                f"{entry.path} (journal entry {end})",
                expected,
                None,
                resume=end in resumed_at,
            )
        if not drawn:
            continue
        quick = (
            harness.profile.name == "quick"
        )  # a killed save: only the drawn state, not also the worst
        for rank, k, mutation in _kill_points(done.logs, scenario.kill_points):
            crashed = _journaled_save(harness, saved, scenario.steps_between, (rank, k), async_save)
            if crashed.failure:
                continue  # this run's save took another path; nothing to judge
            model = _model(saved, crashed)
            where = f"SIGKILL of rank {rank} before mutation {k} ({mutation}) of the save of step {step_b}{mode}"
            for choices in _states(model, scenario.choices, worst=not quick):
                judge(model, choices, where, expected, None)
    verdict.conclude()
