"""The scenario engine: run one phase in fresh rank processes and collect what they report.

Every phase is launched by torch's elastic launcher (``elastic_launch``, ``max_restarts=0``), so
each phase starts from process-fresh state and a missing restore cannot hide in a global. A phase
of ``spec.nodes`` nodes runs that many elastic agents, each with ``world_size // nodes`` ranks and
its own ``LOCAL_RANK`` space: the first in the calling thread, the others in threads of their own
(torch installs its signal handlers only from the main thread and skips them elsewhere). They meet
in a c10d rendezvous on 127.0.0.1 whose TCP store this process hosts on a free port, so no port is
guessed; torch gives every node a distinct node rank and the ranks of a node consecutive global
ranks. Rank processes are forked from a ``forkserver`` that has
pre-imported torch, the modules torch imports lazily on first use, and the adapter's module: they
share nothing with earlier phases, but do not pay those imports again (about 4 s per process).

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
  signal and the last lines of its output, which ranks write to ``logs/`` under ``phase_dir``
  (one folder per node, found through the launcher's failure record of that rank).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from torch.distributed import TCPStore
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from ckptspec.conformance.phase import PhaseResult, PhaseSpec, RankResult
from ckptspec.conformance.worker import process_start_time, run_rank

_PRELOAD = [
    "torch",
    "torch.distributed",
    # Imported lazily by torch on first use, in every rank of every phase, unless preloaded:
    # ``torch.use_deterministic_algorithms`` imports inductor's config (and with it dynamo), the
    # optimizers' first step imports dynamo's and functorch's wrappers. Only modules: no state.
    "torch._inductor.config",
    "torch._dynamo",
    "torch._functorch._aot_autograd",
    "torch.onnx",
    "ckptspec.conformance.worker",
    "ckptspec.digest",
    "ckptspec.errors",
]
STRAGGLER_S = 30.0
"""Once one rank has returned, how long the others may take before they count as hung."""
_SUITE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM})
"""Signals the suite or the launcher sends: injected faults and the watchdog use SIGKILL, the
elastic agent stops the surviving ranks of a failed phase with SIGTERM."""
OUTPUT_TAIL_LINES = 40
_forkserver_ready = False


def _start_method(adapter: str) -> str:
    """``forkserver`` (torch pre-imported) where available, else ``spawn``; the environment
    variable ``CKPTSPEC_START_METHOD=spawn`` forces spawn (for measurements and debugging).

    The forkserver starts with the first phase of the process and also pre-imports the module of
    that phase's ``adapter`` (a framework's adapter imports the framework: seconds per rank).
    The harness has already imported it in this process, so the import cannot fail differently
    there; the forkserver skips a module that raises ``ImportError``."""
    global _forkserver_ready
    if (
        os.environ.get("CKPTSPEC_START_METHOD") == "spawn"
        or "forkserver" not in multiprocessing.get_all_start_methods()
    ):
        return "spawn"
    if not _forkserver_ready:
        module = adapter.partition(":")[0]
        preload = [*_PRELOAD, module] if module in sys.modules else _PRELOAD
        multiprocessing.get_context("forkserver").set_forkserver_preload(preload)
        _forkserver_ready = True
    return "forkserver"


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _rank_process(phase_dir: Path, rank: int) -> tuple[int, bool] | None:
    """``(pid, alive)`` of ``rank``'s process from its pid file, or None before it started;
    ``alive`` only while the pid still names that process (same start time), so a reused pid is
    never taken for it."""
    pid, _, started = _read_text(phase_dir / f"rank-{rank}.pid").strip().partition(" ")
    if not pid.isdigit():
        return None
    return int(pid), bool(started) and process_start_time(int(pid)) == started


def _kill_ranks(phase_dir: Path, world_size: int) -> None:
    """SIGKILL every rank of the phase that has not returned and is still the same process."""
    for rank in range(world_size):
        process = _rank_process(phase_dir, rank)
        if process is not None and process[1] and not (phase_dir / f"rank-{rank}.pkl").exists():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(process[0], signal.SIGKILL)


def _all_exited(phase_dir: Path, world_size: int) -> bool:
    """Whether every rank of the phase has started and its process is gone."""
    return all(
        (process := _rank_process(phase_dir, rank)) is not None and not process[1]
        for rank in range(world_size)
    )


def _output_tail(log_dir: Path, local_rank: int) -> str:
    """The last :data:`OUTPUT_TAIL_LINES` lines of the stderr and stdout of the rank that was
    ``local_rank`` of the agent logging to ``log_dir`` (the launcher names each rank's log folder
    by its local rank; every agent of a phase has a ``log_dir`` of its own)."""
    lines: list[str] = []
    for stream in ("stderr", "stdout"):
        for log in sorted(log_dir.glob(f"*/attempt_*/{local_rank}/{stream}.log")):
            lines += [
                f"  [{stream}] {line}" for line in _read_text(log).splitlines()[-OUTPUT_TAIL_LINES:]
            ]
    return "\n".join(lines) or "  (no output)"


def _launch_node(config: Any, args: tuple[Any, ...], outcome: dict[str, Any]) -> None:
    """Run one elastic agent to its end; record in ``outcome`` the ranks of its node that died by
    a signal (``died``: rank -> (signal number, local rank)) or why the launcher failed (``error``)."""
    try:
        elastic_launch(config, run_rank)(*args)
    except ChildFailedError as exc:  # a rank died (an injected kill, a crash, or the watchdog)
        outcome["died"] = {
            rank: (-failure.exitcode, failure.local_rank)
            for rank, failure in exc.failures.items()
            if failure.exitcode < 0
        }
    except Exception as exc:  # noqa: BLE001 - the launcher itself failed: a harness error
        outcome["error"] = f"{type(exc).__name__}: {exc}"


def run_phase(spec: PhaseSpec, phase_dir: str | os.PathLike[str]) -> PhaseResult:
    """Launch ``spec.world_size`` fresh ranks on ``spec.nodes`` nodes running ``spec``; collect their results.

    ``phase_dir`` (created if needed) receives the ranks' pid, progress and result files and
    the launcher's logs; it must be private to this phase.
    """
    directory = Path(phase_dir)
    directory.mkdir(parents=True, exist_ok=True)
    # The rendezvous store, hosted here until every rank process has exited: then the watchdog
    # closes it, which releases the agents' exit barrier (a node whose rank died never joins it,
    # and torch's agents would otherwise wait 300 s there for it).
    store = [TCPStore("127.0.0.1", 0, is_master=True, multi_tenant=True, wait_for_workers=False)]
    config = LaunchConfig(
        min_nodes=spec.nodes,
        max_nodes=spec.nodes,
        nproc_per_node=spec.world_size // spec.nodes,
        run_id=f"ckptspec-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{store[0].port}",
        rdzv_configs={"timeout": int(max(30, spec.timeout_s)), "is_host": False},
        max_restarts=0,
        monitor_interval=0.05,
        start_method=_start_method(spec.adapter),
        local_addr="127.0.0.1",
        # SIGINT is left to the caller: the launcher's own handler would turn Ctrl-C into a
        # failed phase, and the session would go on to the next test.
        signals_to_handle="SIGTERM,SIGHUP,SIGQUIT",
    )
    log_dirs = [directory / "logs" / f"agent-{i}" for i in range(spec.nodes)]
    configs = [
        dataclasses.replace(config, logs_specs=DefaultLogsSpecs(log_dir=str(d), redirects=Std.ALL))
        for d in log_dirs
    ]
    expired, done = threading.Event(), threading.Event()
    started = time.perf_counter()

    def watchdog() -> None:
        first_return: float | None = None
        while not done.wait(0.1):
            if store and _all_exited(directory, spec.world_size):
                store.clear()
            now = time.perf_counter()
            if first_return is None and any(
                (directory / f"rank-{r}.pkl").exists() for r in range(spec.world_size)
            ):
                first_return = now
            late = first_return is not None and now - first_return > STRAGGLER_S
            if now - started > spec.timeout_s or late:
                expired.set()
                _kill_ranks(directory, spec.world_size)
                return

    thread = threading.Thread(target=watchdog, name="ckptspec-watchdog", daemon=True)
    args = (spec, str(directory), list(sys.path))
    outcomes: list[dict[str, Any]] = [{} for _ in range(spec.nodes)]
    agents = [
        threading.Thread(
            target=_launch_node,
            args=(configs[i], args, outcomes[i]),
            name=f"ckptspec-agent-{i}",
            daemon=True,
        )
        for i in range(1, spec.nodes)
    ]
    thread.start()
    try:
        for agent in agents:
            agent.start()
        _launch_node(configs[0], args, outcomes[0])
        for agent in agents:  # bounded: each agent's ranks return or are killed by the watchdog
            agent.join()
    finally:
        done.set()
        thread.join()
    died = {
        rank: (number, _output_tail(log_dir, local_rank))
        for outcome, log_dir in zip(outcomes, log_dirs)
        for rank, (number, local_rank) in outcome.get("died", {}).items()
    }
    harness_error = (
        "; ".join(outcome["error"] for outcome in outcomes if "error" in outcome) or None
    )
    seconds = time.perf_counter() - started
    ranks: dict[int, RankResult] = {}
    for rank in range(spec.world_size):
        result_file = directory / f"rank-{rank}.pkl"
        if result_file.exists():
            ranks[rank] = pickle.loads(result_file.read_bytes())
    missing = tuple(r for r in range(spec.world_size) if r not in ranks)
    progress = {r: _read_text(directory / f"rank-{r}.progress") or "not started" for r in missing}
    crashed = {
        r: f"died by {signal.Signals(number).name}; last lines of its output:\n{tail}"
        for r, (number, tail) in sorted(died.items())
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
