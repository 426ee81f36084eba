"""Hypothesis strategies for scenarios, the settings the suite runs them under, and replay.

Each scenario is a frozen dataclass of plain values, so that a failing example is printed as
JSON and replayed exactly with ``--ckptspec-replay '{"test": ..., "scenario": {...}}'``.
Strategies are built lazily (``st.deferred``) from the run's options, because test modules are
decorated before the plugin knows the adapter; the quick profile draws from narrow ranges.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from ckptspec.conformance import options
from ckptspec.conformance.adapter import declarations, load_adapter

S = TypeVar("S")


@dataclass(frozen=True)
class ResumeScenario:
    """Train ``total_steps`` uninterrupted, and again cut (save, exit, resume) after each of ``cuts``.

    ``steps_per_epoch`` (needs the ``epochs`` capability) makes epochs that short; None leaves the
    adapter's own training set. ``nodes`` (needs ``multi_node`` when above 1) launches every phase
    as that many nodes of ``world_size // nodes`` ranks each."""

    world_size: int
    total_steps: int
    cuts: tuple[int, ...]
    accumulation_steps: int
    seed: int
    steps_per_epoch: int | None = None
    nodes: int = 1


@dataclass(frozen=True)
class WorldSizeScenario:
    """Save after ``steps`` at ``save_world_size``; resume at ``load_world_size``."""

    save_world_size: int
    load_world_size: int
    steps: int


@dataclass(frozen=True)
class EvalScenario:
    """Evaluate at ``world_size`` with each sharding: per-rank shard sizes (zeros allowed)."""

    world_size: int
    shardings: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class RewindScenario:
    """Save ``saves`` checkpoints one step apart (evaluating before each), resume ``target``, save."""

    saves: int
    target: int


DAMAGES = ("flip", "truncate", "extend", "delete", "replace", "swap")
"""Damage kinds of :class:`IntegrityScenario`: a bit flip in the middle byte, a cut to half, bytes
appended, the file deleted, its bytes replaced by a same-size file of another checkpoint or rank,
two ranks' files of one class swapped. (A newer mtime on an older checkpoint is not damage but a
discovery trap: LAYOUT-8's test sets it.)"""


@dataclass(frozen=True)
class IntegrityScenario:
    """Damage one file of each of several checkpoints, crossing every damage kind with every file
    class the trainer writes (a file's path with its numbers masked: ``model/__#_#.distcp``,
    ``rng/rank-#.pt``, ...). Slot ``j`` (a checkpoint; more slots than checkpoints run in rounds
    on fresh copies of the run) gets kind ``damages[j % len(damages)]`` on the class
    ``(offset + j) % classes`` in path order, ``offset`` being ``picks[0]`` of the class count;
    within a class, the file at fraction ``picks[j % len(picks)]`` of its files. One example so
    covers every kind and every class, never only the largest file."""

    damages: tuple[str, ...]
    picks: tuple[float, ...]


@dataclass(frozen=True)
class AtomicityScenario:
    """Save at ``steps_before``, train ``steps_between`` more, crash the next save at ``crash_points``,
    with ``keep_last`` retention (None: keep every checkpoint), synchronously or (``async_save``)
    in the background; a trainer that can do both is also crashed in the other mode at the
    landmarks.

    Crash points are fractions in ``[0, 1)`` of the dry-run mutation count, so an example replays
    to the same mutation for the same trainer. The test adds the two landmarks of every save:
    just before and just after the rename that commits it.
    """

    steps_before: int
    steps_between: int
    crash_points: tuple[float, ...]
    keep_last: int | None = (
        None  # the run's retention (``retention`` capability): crashes land in its deletions too
    )
    async_save: bool = False  # the crashed save in the background (``async_save`` capability)


NEVER_BETTER = 1e9
"""A ``min_delta`` no score can beat: the first recorded best must stay."""


@dataclass(frozen=True)
class LifecycleScenario:
    """Train/evaluate/save step by step with ``keep_last``, restarting after ``first_leg`` saves;
    the best checkpoint is tracked in ``best_mode`` with ``min_delta`` (where the test tracks one)."""

    keep_last: int
    first_leg: int
    second_leg: int
    best_mode: str = "min"
    min_delta: float = NEVER_BETTER


KEEP_TWO_BEST_MAX = LifecycleScenario(
    keep_last=2, first_leg=2, second_leg=2, best_mode="max", min_delta=0.0
)
"""The lifecycle scenario every profile runs first, the set-up real runs meet most: retention that
keeps more than one checkpoint (with one, keeping one too few keeps nothing less than the latest),
and a best that moves with every rise of the score (``max``: the mode a trainer written for losses
gets wrong; the drawn scenarios cover ``min`` and a ``min_delta`` no score beats)."""


def batch_size(world_sizes: tuple[int, ...], accumulation_steps: int) -> int:
    """The smallest multiple of every ``world_size * accumulation_steps`` that is at least 12.

    (12 fits every quick-profile combination, so that their set-ups share one memoised run.)"""
    base = math.lcm(*(w * accumulation_steps for w in world_sizes))
    return base * max(1, math.ceil(12 / base))


# --- strategies ------------------------------------------------------------------------
def _quick() -> bool:
    return options.current().profile.name == "quick"


@st.composite
def resume_scenarios(draw: Any, accumulation: bool) -> ResumeScenario:
    """Scenarios for bit-exact resume; ``accumulation`` draws ``accumulation_steps >= 2``."""
    sizes = (2,) if _quick() else options.current().profile.world_sizes
    world_size = draw(st.sampled_from(sizes))
    total = draw(st.integers(3, 5) if _quick() else st.integers(3, 8))
    n_cuts = 1 if _quick() else draw(st.integers(1, 2))
    cuts = tuple(sorted(draw(st.sets(st.integers(1, total - 1), min_size=1, max_size=n_cuts))))
    acc = draw(st.integers(2, 3)) if accumulation else 1
    event(f"resume: world size {world_size}, {len(cuts)} cut(s), accumulation {acc}")
    return ResumeScenario(world_size, total, cuts, acc, draw(st.integers(0, 3)))


@st.composite
def world_size_scenarios(draw: Any) -> WorldSizeScenario:
    sizes = options.current().profile.world_sizes
    save = 2 if _quick() else draw(st.sampled_from(sizes))
    load = draw(st.sampled_from([w for w in sizes if w != save]))
    event(f"topology: save at {save}, load at {load}")
    return WorldSizeScenario(save, load, 1 if _quick() else draw(st.integers(1, 3)))


@st.composite
def eval_scenarios(draw: Any, eval_set_size: int) -> EvalScenario:
    world_size = draw(st.sampled_from((2, 3) if _quick() else (2, 3, 4)))
    n = draw(st.integers(2, 3))
    shardings = []
    for _ in range(n):
        # Every sharding has at least one empty and one non-empty rank (the empty set is a
        # separate evaluation of every test).
        sizes = draw(
            st.lists(
                st.integers(1, max(1, eval_set_size // world_size)),
                min_size=world_size,
                max_size=world_size,
            )
        )
        for rank in draw(
            st.sets(st.integers(0, world_size - 1), min_size=1, max_size=world_size - 1)
        ):
            sizes[rank] = 0
        shardings.append(tuple(sizes))
    return EvalScenario(world_size, tuple(shardings))


@st.composite
def rewind_scenarios(draw: Any) -> RewindScenario:
    saves = draw(st.integers(3, 3 if _quick() else 4))
    return RewindScenario(saves, draw(st.integers(1, saves - 1)))


@st.composite
def integrity_scenarios(draw: Any) -> IntegrityScenario:
    """Every damage kind in a drawn order, with a drawn class offset and file fractions."""
    damages = tuple(draw(st.permutations(DAMAGES)))
    event(f"integrity: first damage {damages[0]}")
    return IntegrityScenario(
        damages, tuple(draw(st.floats(0, 1, exclude_max=True)) for _ in damages)
    )


@st.composite
def atomicity_scenarios(draw: Any) -> AtomicityScenario:
    limit = options.current().profile.crash_points
    count = limit if limit is not None else 0  # 0: every mutation (enumerated by the test)
    points = tuple(
        sorted(draw(st.sets(st.floats(0, 1, exclude_max=True), min_size=count, max_size=count)))
    )
    steps = st.just(1) if _quick() else st.integers(1, 2)
    keep_last, async_save = draw(save_policies())
    event(
        f"crash x retention x mode: keep_last {keep_last}, "
        f"{'asynchronous' if async_save else 'synchronous'} save at "
        f"{len(points) or 'every'} drawn crash point(s) + commit landmarks"
    )
    return AtomicityScenario(draw(steps), draw(steps), points, keep_last, async_save)


@st.composite
def save_policies(draw: Any) -> tuple[int | None, bool]:
    """``(keep_last, async_save)`` for a crashed save, within what the adapter declares: retention
    (``retention``; None keeps every checkpoint) and background saves (``async_save``)."""
    declared = declarations(load_adapter(options.current().adapter)).capabilities
    # keep_last 1 first: the retention that can delete the last good checkpoint before the new one commits
    keep_last = draw(st.sampled_from([1, 2, 3, None])) if "retention" in declared else None
    return keep_last, draw(st.booleans()) if "async_save" in declared else False


@st.composite
def lifecycle_scenarios(draw: Any) -> LifecycleScenario:
    """Retention depth, both legs' lengths, and the best's mode and ``min_delta``: 0 (every
    improvement counts) or :data:`NEVER_BETTER` (none does, so the first best must survive)."""
    scenario = LifecycleScenario(
        keep_last=draw(st.integers(1, 2)),
        first_leg=draw(st.integers(1, 2)),
        second_leg=draw(st.integers(2, 3)),
        best_mode=draw(st.sampled_from(["min", "max"])),
        min_delta=draw(st.sampled_from([NEVER_BETTER, 0.0])),
    )
    event(
        f"lifecycle: keep_last {scenario.keep_last}, best {scenario.best_mode} "
        f"min_delta {scenario.min_delta:g}"
    )
    return scenario


# --- running and replaying -------------------------------------------------------------
def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def decode(cls: type[S], data: dict[str, Any]) -> S:
    """The scenario ``cls`` from its JSON form (lists become tuples)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"replay scenario has unknown fields {unknown} for {cls.__name__}")
    return cls(**{k: _tuples(v) for k, v in data.items()})


def replay_command(test_name: str, scenario: Any) -> str:
    """The command line that reruns ``test_name`` on exactly ``scenario``."""
    opts = options.current()
    payload = json.dumps({"test": test_name, "scenario": asdict(scenario)}, separators=(",", ":"))
    return (
        f"pytest --pyargs ckptspec.conformance.tests -k {test_name} --ckptspec-adapter {opts.adapter} "
        f"--ckptspec-profile {opts.profile.name} --ckptspec-replay {shlex.quote(payload)}"
    )


def hypothesis_profile(opts: options.RunOptions) -> settings:
    """The Hypothesis profile of a conformance run, registered as ``ckptspec-<profile>``.

    It inherits from the profile Hypothesis has loaded (its own ``ci`` profile when ``CI`` is
    set, which derandomizes) and sets: ``max_examples`` from the suite's profile (or
    ``--ckptspec-max-examples``), no deadline, no shrinking and no example database (every
    example costs several process launches), ``derandomize`` under ``--ckptspec-derandomize``.
    """
    name = f"ckptspec-{opts.profile.name}"
    settings.register_profile(
        name,
        parent=settings.default,
        max_examples=opts.max_examples,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        **({"derandomize": True} if opts.derandomize else {}),
    )
    return settings.get_profile(name)


def scenario_test(
    cls: type[S],
    strategy: Callable[[], Any],
    *,
    max_examples: int | None = None,
    always: Sequence[S] = (),
) -> Callable[[Callable[..., Any]], Any]:
    """Make a test draw ``scenario`` from ``strategy()`` under the run's :func:`hypothesis_profile`;
    at most ``max_examples`` when given (tests whose one example is already long). The scenarios
    of ``always`` run first in every profile (the case real runs meet most, which a small or
    derandomized profile might not draw). With ``--ckptspec-replay`` naming the test, exactly the
    replayed scenario runs."""

    def decorate(fn: Callable[..., Any]) -> Any:
        name = fn.__name__

        def chosen() -> Any:
            replay = options.current().replay
            if replay is not None and replay.get("test") == name:
                return st.just(decode(cls, replay["scenario"]))
            return strategy()

        opts = options.current()
        profile = hypothesis_profile(opts)
        examples = (
            1 if opts.replay else min(profile.max_examples, max_examples or profile.max_examples)
        )
        test = given(scenario=st.deferred(chosen))(fn)
        for scenario in () if opts.replay else reversed(always):
            test = example(scenario=scenario)(test)
        return settings(profile, max_examples=examples)(test)

    return decorate


# --- metamorphic invariants (RESUME-11, RESUME-12, RUN-9) ----------------------------------
@dataclass(frozen=True)
class InvariantScenario:
    """Train ``total_steps`` at ``world_size`` uninterrupted, and again with one save after
    ``save_step``; resume that checkpoint at ``world_size`` and, with an elastic policy, at
    ``load_world_size``; every later step is compared with the uninterrupted run."""

    world_size: int
    total_steps: int
    save_step: int
    seed: int
    load_world_size: int


@dataclass(frozen=True)
class RestartScenario:
    """Interrupt a run (train, evaluate, save per step) after ``interrupted_at`` steps (up to
    ``total_steps``: a finished run, whose restart trains nothing), first resuming step
    ``rewind_to`` and saving the step after it when set (a rewind); damage its index
    (``"intact"``, ``"lagging"``: ``latest_step`` one commit behind, ``"missing"``; a native
    trainer has no index, and its index is left alone); then restart its ``fit()`` to
    ``total_steps``, and restart it again. ``keep_last`` and ``best`` (track the adapter's first
    metric, ``min``) are the run's policies."""

    total_steps: int
    interrupted_at: int
    keep_last: int | None
    best: bool
    index: str
    rewind_to: int | None


FINISHED_LAGGING = RestartScenario(
    total_steps=3, interrupted_at=3, keep_last=None, best=False, index="lagging", rewind_to=None
)
"""A finished run that stopped between its last commit and the index update, then restarted (an
evaluation job, a resubmitted run): the restart saves nothing, so only start-up repair can put
``run.json`` right. Run first in every profile."""


@st.composite
def invariant_scenarios(draw: Any) -> InvariantScenario:
    """Quick: world size 2, 4-5 steps; full: any profile world size, 3-7 steps. The load world
    size differs from the save one."""
    sizes = options.current().profile.world_sizes
    world_size = 2 if _quick() else draw(st.sampled_from(sizes))
    total = draw(st.integers(4, 5) if _quick() else st.integers(3, 7))
    save_step = draw(st.integers(1, total - 1))
    load = draw(st.sampled_from([w for w in sizes if w != world_size]))
    return InvariantScenario(world_size, total, save_step, draw(st.integers(0, 3)), load)


@st.composite
def restart_scenarios(draw: Any) -> RestartScenario:
    """Policies the adapter under test declares (``retention``, ``best`` with ``eval``); index damage and
    rewinds only for ckptspec writers (a native trainer has no ``run.json`` and no rewind rule);
    a ``missing`` index only without best tracking and rewinds (their records live in
    ``run.json`` only). The rewind target is a step that retention keeps."""
    declared = declarations(load_adapter(options.current().adapter))
    capabilities, native = declared.capabilities, declared.native
    total = draw(st.integers(3, 4) if _quick() else st.integers(3, 6))
    interrupted = draw(st.integers(1, total))
    keep_last = draw(st.sampled_from([None, 1, 2, 3])) if "retention" in capabilities else None
    best = draw(st.booleans()) if {"best", "eval"} <= capabilities else False
    low = max(1, interrupted - keep_last + 1) if keep_last else 1
    targets = list(range(low, interrupted))
    rewind = draw(st.sampled_from([None, *targets])) if targets and not native else None
    kinds = ["intact", "lagging"] + (["missing"] if not best and rewind is None else [])
    index = "intact" if native else draw(st.sampled_from(kinds))
    return RestartScenario(total, interrupted, keep_last, best, index, rewind)
