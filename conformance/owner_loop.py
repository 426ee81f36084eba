"""Owner-loop adapters: a trainer whose framework owns the loop (``trainer.train()``, ``trainer.fit()``).

The suite calls ``resume``, ``train(n)``, ``save``, ``evaluate``, ``full_state`` one at a time; a
framework such as the Hugging Face ``Trainer`` or Lightning's ``Trainer`` runs its loop in one
call. :class:`OwnerLoopAdapter` bridges the two once: it runs the framework's entry point
(:meth:`OwnerLoopAdapter.run_loop`) on a thread, the adapter's framework callback calls
:meth:`OwnerLoopAdapter.park` at each event (step end, save, train begin), and the loop stays
parked there until the suite's next call says what to do. Only one thread runs at a time, so
collectives keep one order on every rank.

What the bridge guarantees:

- **Exceptions propagate**: an exception raised by the loop (a refused resume, a failed save)
  is re-raised, the same object, by the suite's call that was waiting on it.
- **Deadlines**: every wait is bounded by ``deadline_s``; a loop that never reaches the event
  the call waits for (a rank stuck before its step end) fails that call with
  :class:`OwnerLoopTimeout` naming the rank, the event awaited and the last event seen.
- **Resume does not restart from step 0**: :meth:`~OwnerLoopAdapter.resume` (re)starts the loop
  with the checkpoint to load, the framework restores it and skips what it already trained, and
  the call returns at the loop's first event (train begin).
- **No run-ahead**: :meth:`~OwnerLoopAdapter.train` returns parked at the n-th step end, so a
  following ``save`` writes exactly that step.
- **Evaluation through the framework's sampler**: with ``eval_sharding = "framework"``,
  :meth:`~OwnerLoopAdapter.evaluate` gathers every rank's ids (in rank order) and calls
  :meth:`~OwnerLoopAdapter.evaluate_global` with the union on every rank.

A subclass implements :meth:`~OwnerLoopAdapter.run_loop` (its callback applies the
:class:`Directive` that ``park`` returns, e.g. ``control.should_save = directive.save``),
:meth:`~OwnerLoopAdapter.read_full_state`, and with ``eval``
:meth:`~OwnerLoopAdapter.evaluate_global`. Walk-through: "Trainers that own their loop" in
``docs/conformance.md``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch.distributed as dist

from ckptspec.conformance.adapter import EvalSharding, TrainerAdapter
from ckptspec.training import StepRecord

LOOP_EVENTS = ("train_begin", "step_end", "save", "fit_end")
"""The events a loop reports with :meth:`OwnerLoopAdapter.park` (``fit_end`` is reported by the bridge
when :meth:`OwnerLoopAdapter.run_loop` returns)."""


class OwnerLoopTimeout(RuntimeError):
    """The framework's loop did not reach the awaited event within the deadline."""


class OwnerLoopEnded(RuntimeError):
    """The framework's loop finished before reaching the awaited event (e.g. at its ``max_steps``)."""


class _Stop(BaseException):
    """Raised inside a parked loop to unwind it (a ``BaseException`` so framework code does not catch it)."""


@dataclass(frozen=True)
class Directive:
    """What a parked loop does next; the adapter's callback reads it from :meth:`OwnerLoopAdapter.park`."""

    save: bool = (
        False  # save at this step end (the framework's own save, e.g. ``control.should_save``)
    )


@dataclass(frozen=True)
class LoopEvent:
    """One event of the loop: its kind (see :data:`LOOP_EVENTS`), the step, and a value (the
    :class:`StepRecord` of a step end, the path of a save)."""

    kind: str
    step: int
    value: Any = None


class OwnerLoopAdapter(TrainerAdapter):
    """A trainer whose framework owns the loop, driven through events (see the module docstring).

    Subclasses implement :meth:`run_loop` and :meth:`read_full_state`, call :meth:`park` from
    the framework's callbacks, and with ``eval`` implement :meth:`evaluate_global`. The
    adapter's ``step`` is the step of the last event.
    """

    saves_at_step_ends_only: ClassVar[bool] = True
    eval_sharding: ClassVar[EvalSharding] = "framework"
    deadline_s: ClassVar[float] = 600.0
    """Seconds any one call waits for the loop's next awaited event."""
    rank: int = 0  # set by the subclass; named in timeouts

    # --- the subclass's part -------------------------------------------------------------------
    def run_loop(self, checkpoint: str | None, max_steps: int | None) -> None:
        """Run the framework's entry point (blocking) on the loop thread: load ``checkpoint`` when
        given (the framework's own resume), train until ``max_steps`` (None: until stopped) and
        call :meth:`park` at train begin, every step end and every save."""
        raise NotImplementedError(f"{type(self).__name__}.run_loop")

    def evaluate_global(self, global_ids: Sequence[int]) -> dict[str, float] | None:
        """*Collective.* With ``eval``: evaluate the union of every rank's ids through the
        framework's own evaluation (which shards them); the global metrics, None when empty."""
        raise NotImplementedError(f"{type(self).__name__}.evaluate_global (capability `eval`)")

    def read_full_state(self) -> dict[str, Any]:
        """*Collective.* :meth:`TrainerAdapter.full_state`, called on the loop thread while parked."""
        raise NotImplementedError(f"{type(self).__name__}.read_full_state")

    def latest_checkpoint(self) -> str | None:
        """The checkpoint ``resume(None)`` loads: the highest step of ``committed_checkpoints``."""
        found = self.declared_checkpoints()
        return found[max(found)] if found else None

    def declared_checkpoints(self) -> dict[int, str]:
        """``committed_checkpoints`` of this adapter's config (``self.config``)."""
        return {int(k): v for k, v in self.committed_checkpoints(self.config).items()}  # type: ignore[attr-defined]

    # --- the bridge ----------------------------------------------------------------------------
    _thread: threading.Thread | None = None
    _last: LoopEvent | None = None

    @property
    def step(self) -> int:  # type: ignore[override]
        """The step of the loop's last event (0 before the loop starts)."""
        return self._last.step if self._last else 0

    def park(self, kind: str, step: int, value: Any = None) -> Directive:
        """Called on the loop thread by the framework callback: report ``kind`` at ``step`` and
        block until the suite's next call; returns what to do next. Runs calls the suite makes
        on the loop thread (``evaluate``, ``full_state``) while parked."""
        if kind not in LOOP_EVENTS:
            raise ValueError(f"unknown loop event {kind!r}; known: {list(LOOP_EVENTS)}")
        self._events.put(LoopEvent(kind, step, value))
        while True:
            order = self._orders.get()
            if isinstance(order, Directive):
                return order
            if order is None:
                raise _Stop()
            try:
                self._events.put(LoopEvent("called", step, order()))
            except Exception as exc:  # noqa: BLE001 - handed to the suite's call
                self._events.put(LoopEvent("error", step, exc))

    def _start(self, checkpoint: str | None, max_steps: int | None) -> None:
        self._stop_loop()
        self._events: queue.Queue[LoopEvent] = queue.Queue()
        self._orders: queue.Queue[Any] = queue.Queue()
        self._last = None
        events = self._events

        def body() -> None:
            try:
                self.run_loop(checkpoint, max_steps)
            except _Stop:
                return
            except BaseException as exc:  # noqa: BLE001 - re-raised by the waiting call
                events.put(LoopEvent("error", self.step, exc))
                return
            events.put(LoopEvent("fit_end", self.step))

        self._thread = threading.Thread(
            target=body, name=f"owner-loop-rank-{self.rank}", daemon=True
        )
        self._thread.start()

    def _wait(self, awaited: str, records: list[StepRecord] | None = None) -> LoopEvent:
        """The next event of kind ``awaited``; every other event is answered with an empty
        directive (continue). Step-end records are appended to ``records``."""
        while True:
            try:
                event = self._events.get(timeout=self.deadline_s)
            except queue.Empty:
                last = (
                    f"{self._last.kind} at step {self._last.step}"
                    if self._last
                    else "none (not started)"
                )
                raise OwnerLoopTimeout(
                    f"rank {self.rank}: the framework's loop did not reach {awaited!r} within {self.deadline_s:g}s "
                    f"(last event: {last})"
                ) from None
            if event.kind == "error":
                raise event.value
            if event.kind == "called":
                return event
            self._last = event
            if event.kind == "step_end" and records is not None:
                records.append(event.value)
            if event.kind == awaited:
                return event
            if event.kind == "fit_end":
                raise OwnerLoopEnded(
                    f"rank {self.rank}: the framework's loop finished at step {event.step} "
                    f"before reaching {awaited!r}"
                )
            self._orders.put(Directive())

    def _stop_loop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._orders.put(None)
            thread.join(self.deadline_s)

    def _on_loop(self, fn: Any) -> Any:
        """Run ``fn`` on the parked loop thread (starting a fresh loop first if none runs); after
        the framework's loop finished (``fit()``), on the calling thread, against what it left."""
        if self._last is not None and self._last.kind == "fit_end":
            if self._thread is not None:
                self._thread.join(self.deadline_s)
            return fn()
        if not self._parked():
            self._start(None, None)
            self._wait("train_begin")
        self._orders.put(fn)
        return self._wait("called").value

    def _parked(self) -> bool:
        return (
            self._thread is not None
            and self._thread.is_alive()
            and self._last is not None
            and self._last.kind != "fit_end"
        )

    # --- the suite's protocol ------------------------------------------------------------------
    def resume(self, checkpoint: str | None = None) -> int:
        """*Collective.* (Re)start the loop loading ``checkpoint`` (latest when None; nothing
        when there is none); returns the step at train begin. A refusal is the framework's
        exception, re-raised."""
        self._start(checkpoint if checkpoint is not None else self.latest_checkpoint(), None)
        return self._wait("train_begin").step

    def train(self, steps: int) -> list[StepRecord]:
        """*Collective.* Let the loop run ``steps`` step ends; returns parked at the last one."""
        if not self._parked():
            self._start(None, None)
            self._wait("train_begin")
        records: list[StepRecord] = []
        for _ in range(steps):
            self._orders.put(Directive())
            self._wait("step_end", records)
        return records

    def save(self) -> str:
        """*Collective.* Save at the current step end through the framework's own save; returns its path."""
        if not self._parked() or self._last is None or self._last.kind not in ("step_end", "save"):
            raise RuntimeError(
                f"rank {self.rank}: this trainer saves only at a step end (saves_at_step_ends_only); "
                f"the loop is at {self._last.kind if self._last else 'no event'}"
            )
        if self._last.kind == "save":
            return str(self._last.value)
        self._orders.put(Directive(save=True))
        return str(self._wait("save").value)

    def fit(self) -> list[StepRecord]:
        """*Collective.* The framework's own main loop from its latest checkpoint to ``total_steps``."""
        self._start(self.latest_checkpoint(), self.config.total_steps)  # type: ignore[attr-defined]
        records: list[StepRecord] = []
        self._wait("fit_end", records)
        return records

    def evaluate(self, samples: Sequence[int]) -> dict[str, float] | None:
        """*Collective.* With ``eval``: the union of every rank's ``samples`` through :meth:`evaluate_global`."""
        global_ids = list(samples)
        if dist.is_initialized() and dist.get_world_size() > 1:
            shards: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(shards, list(samples))
            global_ids = [i for shard in shards for i in shard]
        return self._on_loop(lambda: self.evaluate_global(global_ids))

    def full_state(self) -> dict[str, Any]:
        """*Collective.* :meth:`read_full_state` on the parked loop thread."""
        return self._on_loop(self.read_full_state)

    def close(self) -> None:
        """Unwind a parked loop and wait for its thread (up to ``deadline_s``)."""
        self._stop_loop()
