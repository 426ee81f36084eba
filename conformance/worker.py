"""The rank entrypoint: what every process of a phase runs.

:func:`run_rank` initialises the default process group from the launcher's environment (gloo on
CPU; NCCL and ``cuda:<local_rank>`` where CUDA is available), builds the adapter, executes the
phase's actions in order and writes a :class:`~ckptspec.conformance.phase.RankResult` to
``<phase_dir>/rank-<r>.pkl``. It never raises: an exception inside an adapter call becomes an
:class:`~ckptspec.conformance.phase.ErrorInfo` on that action. Before each action the rank
writes ``rank-<r>.progress`` so that the engine can say where a hung or killed rank was.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ckptspec.checkpointing.fsio import write_atomic
from ckptspec.conformance.adapter import RankContext, declarations, load_adapter
from ckptspec.conformance.faults import interpose
from ckptspec.conformance.gate import arrive_and_wait
from ckptspec.conformance.phase import (
    Action,
    ActionResult,
    ErrorInfo,
    Evaluate,
    Fit,
    FullState,
    Hold,
    PhaseSpec,
    RankResult,
    Resume,
    Save,
    Train,
    TrainMicro,
)
from ckptspec.digest import leaf_digests
from ckptspec.errors import CheckpointError


def error_info(
    exc: BaseException, *, harness: bool = False, refusals: tuple[type[BaseException], ...] = ()
) -> ErrorInfo:
    """Describe ``exc`` as picklable data, keeping the typed fields of a CheckpointError.

    ``is_checkpoint_error`` (a refusal) is true for a CheckpointError or one of ``refusals``, the
    adapter's declared ``refusal_errors``."""
    details: dict[str, Any] = {}
    for attr in ("differences", "components", "problems", "saved", "current"):
        if hasattr(exc, attr):
            value = getattr(exc, attr)
            details[attr] = (
                sorted(value)
                if attr == "differences"
                else (list(value) if attr in ("components", "problems") else value)
            )
    return ErrorInfo(
        type=f"{type(exc).__module__}.{type(exc).__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
        is_checkpoint_error=isinstance(exc, (CheckpointError, *refusals)),
        code=str(getattr(exc, "code", "")) if isinstance(exc, CheckpointError) else "",
        requirement=str(getattr(exc, "requirement", ""))
        if isinstance(exc, CheckpointError)
        else "",
        details=details,
        harness=harness,
    )


def _records(records: Any) -> list[tuple[int, float, float, tuple[int, ...]]]:
    """Step records as plain tuples ``(step, loss, lr, samples)``."""
    return [
        (int(r.step), float(r.loss), float(r.lr), tuple(int(s) for s in r.samples)) for r in records
    ]


class _Rank:
    def __init__(self, spec: PhaseSpec, phase_dir: str, rank: int) -> None:
        self.spec, self.phase_dir, self.rank = spec, phase_dir, rank
        self.adapter: Any = None
        self.refusals: tuple[type[BaseException], ...] = ()

    def progress(self, text: str) -> None:
        write_atomic(Path(self.phase_dir, f"rank-{self.rank}.progress"), text.encode())

    def call(self, name: str, fn: Any, *, digest: bool = False) -> ActionResult:
        """Run one adapter call, turning its exception into an ErrorInfo."""
        started = time.perf_counter()
        value: Any = None
        error: ErrorInfo | None = None
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - every trainer failure is data
            error = error_info(exc, refusals=self.refusals)
        if error is None and digest:
            value, error = self.digest(value)
        step: int | None = None
        if self.adapter is not None:
            try:
                step = int(self.adapter.step)
            except BaseException:  # noqa: BLE001 - an unreadable step is reported as None
                step = None
        return ActionResult(
            name=name, value=value, error=error, step=step, seconds=time.perf_counter() - started
        )

    @staticmethod
    def digest(state: Any) -> tuple[Any, ErrorInfo | None]:
        try:
            return leaf_digests(state), None
        except BaseException as exc:  # noqa: BLE001 - an undigestable state is the trainer's fault (DIGEST-1)
            return None, error_info(exc)

    def perform(self, action: Action) -> ActionResult:
        a = self.adapter
        if isinstance(action, Resume):
            return self.call("resume", lambda: int(a.resume(action.checkpoint)))
        if isinstance(action, Train):
            return self.call("train", lambda: _records(a.train(action.steps)))
        if isinstance(action, TrainMicro):
            return self.call("train_micro", lambda: a.train_micro(action.count))
        if isinstance(action, Fit):
            return self.call("fit", lambda: _records(a.fit()))
        if isinstance(action, Evaluate):
            shard = list(action.shards[self.rank])
            return self.call("evaluate", lambda: _metrics(a.evaluate(shard)))
        if isinstance(action, FullState):
            return self.call("full_state", a.full_state, digest=True)
        if isinstance(action, Save):
            return self.save(action)
        if isinstance(action, Hold):
            return self.call("hold", lambda: _hold(action.gate, self.rank))
        raise TypeError(f"unknown action {action!r}")

    def save(self, action: Save) -> ActionResult:
        if action.fault is None:
            return self.call("save", lambda: str(self.adapter.save()))
        with interpose(self.spec.config.output_dir, action.fault, self.rank, self.progress) as log:
            result = self.call("save", lambda: str(self.adapter.save()))
        return ActionResult(
            result.name, result.value, result.error, result.step, tuple(log), result.seconds
        )

    def run(self) -> RankResult:
        spec = self.spec
        local_rank = int(os.environ.get("LOCAL_RANK", self.rank))
        device = f"cuda:{local_rank}" if _cuda() else "cpu"
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", spec.world_size // spec.nodes))
        ctx = RankContext(
            rank=self.rank,
            world_size=spec.world_size,
            local_rank=local_rank,
            device=device,
            local_world_size=local_world_size,
        )
        self.progress("build")
        cls = load_adapter(spec.adapter)
        self.refusals = declarations(cls).refusal_errors
        build = self.call("build", lambda: cls(spec.config, ctx))
        if not build.ok:
            return RankResult(self.rank, build, ())
        self.adapter, build = (
            build.value,
            ActionResult("build", step=build.step, seconds=build.seconds),
        )
        results: list[ActionResult] = []
        for index, action in enumerate(spec.actions):
            self.progress(f"action {index} ({type(action).__name__.lower()})")
            result = self.perform(action)
            results.append(result)
            if not result.ok and index not in spec.may_fail:
                break
        self.progress("close")
        closed = self.call("close", self.adapter.close)
        if not closed.ok:
            results.append(closed)
        return RankResult(self.rank, build, tuple(results))


def _hold(gate: str, rank: int) -> None:
    """Rank 0 waits at the gate until the test releases it; then every rank leaves through a barrier."""
    if rank == 0:
        arrive_and_wait(gate)
    dist.barrier()


def _metrics(metrics: Any) -> dict[str, float] | None:
    return None if metrics is None else {str(k): float(v) for k, v in dict(metrics).items()}


def _cuda() -> bool:
    return torch.cuda.is_available()


def process_start_time(pid: int) -> str:
    """The start time of process ``pid`` (``/proc``, in clock ticks since boot), or "" if unknown.

    With the pid it identifies a process even after the pid has been reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def run_rank(spec: PhaseSpec, phase_dir: str, sys_path: list[str]) -> None:
    """Entrypoint of one rank of a phase (called by the elastic launcher). Never raises."""
    os.environ["OMP_NUM_THREADS"] = "1"
    faulthandler.enable()  # a crash leaves the Python stack in the rank's log for the report
    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    rank = int(os.environ["RANK"])
    write_atomic(
        Path(phase_dir, f"rank-{rank}.pid"),
        f"{os.getpid()} {process_start_time(os.getpid())}".encode(),
    )
    worker = _Rank(spec, phase_dir, rank)
    try:
        torch.set_num_threads(1)
        if _cuda():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(
            "nccl" if _cuda() else "gloo", timeout=timedelta(seconds=max(5.0, spec.timeout_s))
        )
        result = worker.run()
    except BaseException as exc:  # noqa: BLE001 - a broken harness is reported, not raised
        failed = ActionResult("harness", error=error_info(exc, harness=True))
        result = RankResult(rank, failed, ())
    write_atomic(Path(phase_dir, f"rank-{rank}.pkl"), pickle.dumps(result))
    try:
        if dist.is_initialized():
            dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - teardown problems do not change the result
        pass
