"""The scenario engine: run one phase in fresh rank processes and collect what they report.

Every phase is launched by torch's elastic launcher (``elastic_launch`` with a c10d rendezvous on
``localhost:0``, ``max_restarts=0``), so each phase starts from process-fresh state and a missing
restore cannot hide in a global. Rank processes are forked from a ``forkserver`` that has
pre-imported torch: they share nothing with earlier phases, but do not pay torch's import time
again (about 2 s per process).

Guarantees of :func:`run_phase`:

- it returns within ``spec.timeout_s`` plus a few seconds: a watchdog SIGKILLs every rank still
  running at the deadline, or :data:`STRAGGLER_S` after the first rank returned (a rank left
  blocked in a collective after a peer gave up), and the result names those ranks
  (``timed_out``, ``missing``) and the action each was in. The process group's collective
  timeout is set to the same deadline, so gloo's 30-minute default never applies;
- it never raises for anything a rank does: trainer exceptions come back per action, a rank that
  died comes back in ``missing``, and a launcher failure in ``harness_error``;
- a rank that died by a signal the suite did not send (SIGABRT, SIGSEGV, ...: neither an injected
  SIGKILL nor the launcher's or the watchdog's termination) comes back in ``crashed`` with the
  signal and the last lines of its output, which ranks write to ``logs/`` under ``phase_dir``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

from ckptspec.conformance.phase import PhaseResult, PhaseSpec, RankResult

_PRELOAD = ["torch", "torch.distributed", "ckptspec.conformance.worker", "ckptspec.digest", "ckptspec.errors"]
STRAGGLER_S = 30.0
"""Once one rank has returned, how long the others may take before they count as hung."""
_SUITE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM})
"""Signals the suite or the launcher sends: injected faults and the watchdog use SIGKILL, the
elastic agent stops the surviving ranks of a failed phase with SIGTERM."""
OUTPUT_TAIL_LINES = 40
_forkserver_ready = False


def _start_method() -> str:
    """``forkserver`` (torch pre-imported) where available, else ``spawn``; the environment
    variable ``CKPTSPEC_START_METHOD=spawn`` forces spawn (for measurements and debugging)."""
    global _forkserver_ready
    if os.environ.get("CKPTSPEC_START_METHOD") == "spawn" or "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    if not _forkserver_ready:
        multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
        _forkserver_ready = True
    return "forkserver"


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _kill_ranks(phase_dir: Path, world_size: int) -> None:
    """SIGKILL every rank of the phase that has not returned and is still the same process
    (pid and start time match, so a reused pid is never killed)."""
    from ckptspec.conformance.worker import process_start_time

    for rank in range(world_size):
        pid, _, started = _read_text(phase_dir / f"rank-{rank}.pid").strip().partition(" ")
        if not pid.isdigit() or (phase_dir / f"rank-{rank}.pkl").exists():
            continue
        if started and process_start_time(int(pid)) == started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)


def _output_tail(phase_dir: Path, rank: int) -> str:
    """The last :data:`OUTPUT_TAIL_LINES` lines of ``rank``'s stderr and stdout (single node:
    the launcher names each rank's log folder by its local rank, which equals its rank)."""
    lines: list[str] = []
    for stream in ("stderr", "stdout"):
        for log in sorted((phase_dir / "logs").glob(f"*/attempt_*/{rank}/{stream}.log")):
            lines += [f"  [{stream}] {line}" for line in _read_text(log).splitlines()[-OUTPUT_TAIL_LINES:]]
    return "\n".join(lines) or "  (no output)"


def run_phase(spec: PhaseSpec, phase_dir: str | os.PathLike[str]) -> PhaseResult:
    """Launch ``spec.world_size`` fresh ranks running ``spec``; collect their results.

    ``phase_dir`` (created if needed) receives the ranks' pid, progress and result files and
    the launcher's logs; it must be private to this phase.
    """
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from ckptspec.conformance.worker import run_rank

    directory = Path(phase_dir)
    directory.mkdir(parents=True, exist_ok=True)
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=spec.world_size,
        run_id=f"ckptspec-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        rdzv_configs={"timeout": int(max(30, spec.timeout_s))},
        max_restarts=0,
        monitor_interval=0.05,
        start_method=_start_method(),
        logs_specs=DefaultLogsSpecs(log_dir=str(directory / "logs"), redirects=Std.ALL),
    )
    expired, done = threading.Event(), threading.Event()
    started = time.perf_counter()

    def watchdog() -> None:
        first_return: float | None = None
        while not done.wait(0.1):
            now = time.perf_counter()
            if first_return is None and any((directory / f"rank-{r}.pkl").exists() for r in range(spec.world_size)):
                first_return = now
            late = first_return is not None and now - first_return > STRAGGLER_S
            if now - started > spec.timeout_s or late:
                expired.set()
                _kill_ranks(directory, spec.world_size)
                return

    thread = threading.Thread(target=watchdog, name="ckptspec-watchdog", daemon=True)
    harness_error = None
    died: dict[int, int] = {}  # rank -> signal number
    thread.start()
    try:
        elastic_launch(config, run_rank)(spec, str(directory), list(sys.path))
    except ChildFailedError as exc:  # a rank died (an injected kill, a crash, or the watchdog)
        died = {rank: -failure.exitcode for rank, failure in exc.failures.items() if failure.exitcode < 0}
    except Exception as exc:  # noqa: BLE001 - the launcher itself failed: a harness error
        harness_error = f"{type(exc).__name__}: {exc}"
    finally:
        done.set()
        thread.join()
    seconds = time.perf_counter() - started
    ranks: dict[int, RankResult] = {}
    for rank in range(spec.world_size):
        result_file = directory / f"rank-{rank}.pkl"
        if result_file.exists():
            ranks[rank] = pickle.loads(result_file.read_bytes())
    missing = tuple(r for r in range(spec.world_size) if r not in ranks)
    progress = {r: _read_text(directory / f"rank-{r}.progress") or "not started" for r in missing}
    crashed = {
        r: f"died by {signal.Signals(number).name}; last lines of its output:\n{_output_tail(directory, r)}"
        for r, number in sorted(died.items())
        if r in missing and number not in _SUITE_SIGNALS and number in signal.valid_signals()
    }
    return PhaseResult(
        spec=spec,
        ranks=ranks,
        missing=missing,
        progress=progress,
        crashed=crashed,
        timed_out=expired.is_set() and bool(missing),
        harness_error=harness_error,
        seconds=seconds,
    )
