"""The data model of a phase: what the engine launches and what comes back.

A *phase* is one launch of fresh rank processes: an adapter import string, a
:class:`~ckptspec.conformance.adapter.ScenarioConfig`, a world size and a list of *actions*
that every rank executes in order after building the adapter. Everything here is a frozen,
picklable value: specs travel to the rank processes, results travel back. Tensors never travel:
full states are digested inside the rank (:func:`ckptspec.digest.leaf_digests`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ckptspec.conformance.adapter import ScenarioConfig


@dataclass(frozen=True)
class Fault:
    """A deterministic crash point inside one action, on one rank.

    Mutations are the file-system calls a rank makes under the run's ``output_dir`` (see
    :mod:`ckptspec.conformance.faults`), numbered from 1 in call order. ``kind``:

    - ``count``: inject nothing, only record the mutations (the dry run);
    - ``kill``: SIGKILL the rank just before mutation ``at`` executes;
    - ``oserror``: make mutation ``at`` raise ``OSError(EIO)`` instead of executing;
    - ``hold``: just before mutation ``at`` executes, wait at the gate in the directory ``gate``
      (:class:`~ckptspec.conformance.gate.Gate`, as :class:`Hold` does between adapter calls),
      then go on; it holds once.

    ``journal``, when set, is a directory outside the run where every rank appends the
    operations it completed, with the content of each file at each of its fsyncs
    (:mod:`ckptspec.conformance.faults`); :mod:`ckptspec.conformance.crash_states` builds the
    states a power loss may leave from it.
    """

    kind: Literal["count", "kill", "oserror", "hold"]
    rank: int = 0
    at: int = 0
    journal: str = ""
    gate: str = ""


@dataclass(frozen=True)
class Mutation:
    """One numbered file-system mutation: ``op`` on ``path`` (``dst`` for renames and links),
    at ``time`` (``time.monotonic()``, comparable across the ranks of one machine)."""

    time: float
    op: str  # "open", "os.open", "rename", "replace", "fsync", "mkdir", "unlink", ...
    path: str  # relative to the run's output_dir
    dst: str = ""

    def __str__(self) -> str:
        return f"{self.op}({self.path}{' -> ' + self.dst if self.dst else ''})"


@dataclass(frozen=True)
class Resume:
    """``adapter.resume(checkpoint)``; the result value is the step resumed at."""

    checkpoint: str | None = None


@dataclass(frozen=True)
class Train:
    """``adapter.train(steps)``; the result value is the list of step records as tuples."""

    steps: int


@dataclass(frozen=True)
class TrainMicro:
    """``adapter.train_micro(count)``: part of the next optimizer step; the value is None."""

    count: int


@dataclass(frozen=True)
class Save:
    """``adapter.save()``, optionally under a :class:`Fault`; the value is the checkpoint path."""

    fault: Fault | None = None


@dataclass(frozen=True)
class Fit:
    """``adapter.fit()``; the value is the list of step records as tuples."""


@dataclass(frozen=True)
class Evaluate:
    """``adapter.evaluate(shards[rank])``: one eval shard (sample ids) per rank."""

    shards: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Hold:
    """Every rank waits here, between adapter calls, until the test opens the gate in the
    directory ``gate`` (:class:`~ckptspec.conformance.gate.Gate`): rank 0 reports that it
    arrived, then blocks until released, and the other ranks wait for it in a barrier. Lets a
    test act while this phase's job is alive at a known point (e.g. start a second writer)."""

    gate: str


@dataclass(frozen=True)
class FullState:
    """``adapter.full_state()`` digested in the rank: the value is ``{leaf path: digest}``."""


Action = Resume | Train | TrainMicro | Save | Fit | Evaluate | FullState | Hold


@dataclass(frozen=True)
class PhaseSpec:
    """One launch: build ``adapter`` with ``config`` on ``world_size`` ranks, then run ``actions``.

    After an action raises on a rank, that rank runs no further action unless the action's
    index is in ``may_fail`` (an expected refusal, e.g. a resume that must be rejected).
    ``nodes`` (dividing ``world_size``) is how many nodes, each with its own ``LOCAL_RANK``
    space of ``world_size // nodes`` ranks, the phase is launched as; a bad value raises
    ``ValueError`` here, before anything is launched.
    """

    adapter: str
    config: ScenarioConfig
    world_size: int
    actions: tuple[Action, ...]
    may_fail: frozenset[int] = frozenset()
    timeout_s: float = 120.0
    nodes: int = 1

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.world_size % self.nodes:
            raise ValueError(
                f"a phase of world size {self.world_size} cannot run on {self.nodes} node(s): "
                "nodes must be a positive divisor of the world size"
            )


@dataclass(frozen=True)
class ErrorInfo:
    """An exception raised inside an adapter call (or, with ``harness``, inside the suite)."""

    type: str  # qualified class name
    message: str
    traceback: str
    is_checkpoint_error: bool
    code: str = ""  # CheckpointError.code
    requirement: str = ""  # CheckpointError.requirement
    details: dict[str, Any] = field(default_factory=dict)  # e.g. ConfigDriftError.differences keys
    harness: bool = False

    def short(self) -> str:
        """``Type: message`` on one line."""
        return f"{self.type}: {self.message}".splitlines()[0][:400]


@dataclass(frozen=True)
class ActionResult:
    """The outcome of one action on one rank."""

    name: str
    value: Any = None
    error: ErrorInfo | None = None
    step: int | None = None  # adapter.step after the action, when it could be read
    mutations: tuple[Mutation, ...] = ()  # file-system mutations seen under a Fault
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the action returned normally."""
        return self.error is None


@dataclass(frozen=True)
class RankResult:
    """Everything one rank reported: the build, then one result per action it reached."""

    rank: int
    build: ActionResult
    actions: tuple[ActionResult, ...]


@dataclass
class PhaseResult:
    """What came back from a phase.

    ``missing`` lists ranks that returned no result: killed by an injected fault, crashed, or
    (with ``timed_out``) still running when the engine's deadline passed; ``progress`` says for
    each of them the last action it had started. ``crashed`` holds the missing ranks that died by a
    signal the suite did not send, with the signal and the tail of their output.
    """

    spec: PhaseSpec
    ranks: dict[int, RankResult]
    missing: tuple[int, ...] = ()
    progress: dict[int, str] = field(default_factory=dict)
    crashed: dict[int, str] = field(default_factory=dict)
    timed_out: bool = False
    harness_error: str | None = None
    seconds: float = 0.0

    def results(self, index: int) -> dict[int, ActionResult]:
        """The result of action ``index`` on every rank that reached it."""
        return {r: rr.actions[index] for r, rr in self.ranks.items() if index < len(rr.actions)}

    def value(self, index: int, rank: int = 0) -> Any:
        """The value of action ``index`` on ``rank``; raises ``LookupError`` if it has none."""
        result = self.results(index).get(rank)
        if result is None or not result.ok:
            raise LookupError(f"action {index} has no value on rank {rank}: {self.describe()}")
        return result.value

    def errors(self) -> list[tuple[int, str, ErrorInfo]]:
        """``(rank, action name, error)`` for every failed build or action."""
        out = []
        for r, rr in sorted(self.ranks.items()):
            for res in (rr.build, *rr.actions):
                if res.error is not None:
                    out.append((r, res.name, res.error))
        return out

    def describe(self) -> str:
        """A multi-line account of failures, hangs and missing ranks, for assertion messages."""
        lines = []
        if self.harness_error:
            lines.append(f"harness error: {self.harness_error}")
        if self.timed_out:
            lines.append(
                f"HANG: ranks {list(self.missing)} did not return (killed by the engine's deadline)"
            )
        elif self.missing:
            lines.append(f"ranks {list(self.missing)} returned no result")
        for r, where in sorted(self.progress.items()):
            lines.append(f"  rank {r} was in: {where}")
        for r, what in sorted(self.crashed.items()):
            lines.append(f"  rank {r} {what}")
        for r, name, err in self.errors():
            lines.append(f"  rank {r} {name}: {err.short()}")
        return "\n".join(lines) or "ok"
