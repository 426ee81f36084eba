"""Live progress of ``ckptspec conformance``: which test and which phase is running, for how long.

Every phase goes through :meth:`~ckptspec.conformance.harness.Harness.phase`, which calls
:func:`phase_started` and :func:`phase_ended`. Under pytest-xdist the phases run in worker
processes whose output never reaches the terminal, so the events travel through a named pipe
(FIFO) whose path is in the environment variable :data:`PROGRESS_ENV` (workers inherit it): each
event is one JSON line, written in one ``write`` of less than ``PIPE_BUF`` bytes, so lines from
concurrent workers never interleave. A FIFO rather than a log file, because its reader blocks until
a line arrives instead of polling a file for growth. The reader, :class:`ProgressPrinter`, runs in
a thread of the ``ckptspec conformance`` process and prints one line per finished phase; on a
terminal it also keeps a live line of the running phases, refreshed every second. Without xdist
the single pytest process writes to the same pipe, so the output is the same.

Without the variable (plain ``pytest`` runs of the suite), or with no reader, events are dropped:
progress never blocks or fails a phase.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ckptspec.conformance.phase import PhaseResult

PROGRESS_ENV = "CKPTSPEC_PROGRESS"
"""Environment variable naming the FIFO that phase events are written to."""

_LINE_LIMIT = (
    4000  # under Linux's PIPE_BUF (4096): one write, never interleaved with another worker's
)
_STOP = b'{"event": "stop"}\n'

_lock = threading.Lock()
_tests: dict[
    str, tuple[int, float]
] = {}  # test -> (phases started, monotonic start of its first phase)


def _current_test() -> str:
    """The running test's name (pytest sets ``PYTEST_CURRENT_TEST`` to ``path::name (when)``)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    return current.rsplit(" (", 1)[0].split("::", 1)[-1] or "(outside a test)"


def _send(event: dict[str, Any]) -> None:
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    line = json.dumps(event)
    if len(line) >= _LINE_LIMIT:
        event["test"] = event["test"][:200]
        line = json.dumps(event)[: _LINE_LIMIT - 1]
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_NONBLOCK
        )  # ENXIO (no reader) or ENOENT: nobody listens
    except OSError:
        return
    try:
        os.set_blocking(fd, True)  # a full pipe waits for the reader, which always drains it
        os.write(fd, (line + "\n").encode())
    except OSError:
        pass  # the reader went away: progress is best effort
    finally:
        os.close(fd)


def phase_started(world_size: int, actions: Sequence[object]) -> tuple[str, int]:
    """Announce a phase of the current test; returns (test, phase index within the test) for :func:`phase_ended`."""
    test = _current_test()
    with _lock:
        count, first = _tests.get(test, (0, time.monotonic()))
        _tests[test] = (count + 1, first)
    _send(
        {
            "event": "start",
            "test": test,
            "phase": count + 1,
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "world_size": world_size,
            "actions": [type(a).__name__ for a in actions],
        }
    )
    return test, count + 1


def phase_status(result: PhaseResult) -> str:
    """How a phase ended, in a few words (a rank error may be what the test expects)."""
    if result.harness_error or any(e.harness for _, _, e in result.errors()):
        return "harness error"
    if result.timed_out:
        return f"timed out (ranks {list(result.missing)})"
    if result.crashed:
        return f"crashed (ranks {sorted(result.crashed)})"
    failed = sorted({rank for rank, _, _ in result.errors()})
    return f"done, errors on ranks {failed}" if failed else "done"


def phase_ended(
    started: tuple[str, int],
    world_size: int,
    actions: Sequence[object],
    seconds: float,
    status: str,
) -> None:
    """Announce the end of the phase that :func:`phase_started` returned ``started`` for."""
    test, phase = started
    with _lock:
        test_elapsed = time.monotonic() - _tests[test][1]
    _send(
        {
            "event": "end",
            "test": test,
            "phase": phase,
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "world_size": world_size,
            "actions": [type(a).__name__ for a in actions],
            "seconds": round(seconds, 2),
            "test_seconds": round(test_elapsed, 2),
            "status": status,
        }
    )


def describe(event: dict[str, Any]) -> str:
    """One event as a line of text (``[gw0] test phase 2 ws=2 Train,Save: ok in 3.1s (test 7.4s)``)."""
    head = f"[{event['worker']}] {event['test']} phase {event['phase']} ws={event['world_size']} {','.join(event['actions'])}"
    if event["event"] == "end":
        return f"{head}: {event['status']} in {event['seconds']:.1f}s (test {event['test_seconds']:.1f}s)"
    return head


class ProgressPrinter:
    """Reads phase events from a FIFO it creates in ``directory`` and prints them to ``stream``.

    Use as a context manager around the pytest run, with :data:`PROGRESS_ENV` set to :attr:`path`.
    On exit every event written before is printed, the thread is joined and the FIFO removed.
    """

    def __init__(self, directory: Path, stream: TextIO) -> None:
        self.path = directory / "progress.fifo"
        self._stream = stream
        self._live = stream.isatty()
        self._running: dict[tuple[str, int, str], tuple[dict[str, Any], float]] = {}
        os.mkfifo(self.path)
        # Read-write: the open never blocks, writers can always open it, and the pipe never reports EOF.
        self._fd = os.open(self.path, os.O_RDWR)
        self._thread = threading.Thread(target=self._read, name="ckptspec-progress", daemon=True)

    def __enter__(self) -> ProgressPrinter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        os.write(self._fd, _STOP)
        self._thread.join()
        os.close(self._fd)
        self.path.unlink()

    def _read(self) -> None:
        pending = b""
        while True:
            if self._live and not select.select([self._fd], [], [], 1.0)[0]:
                self._draw()  # no event for a second: refresh the elapsed times
                continue
            pending += os.read(self._fd, 65536)
            *lines, pending = pending.split(b"\n")
            for line in lines:
                event: dict[str, Any] = json.loads(line)
                if event["event"] == "stop":
                    self._write("")
                    return
                self._handle(event)

    def _handle(self, event: dict[str, Any]) -> None:
        key = (event["worker"], event["phase"], event["test"])
        if event["event"] == "start":
            self._running[key] = (event, time.monotonic())
            self._draw()
        else:
            self._running.pop(key, None)
            self._write(describe(event) + "\n")

    def _live_line(self) -> str:
        now = time.monotonic()
        line = " | ".join(f"{describe(e)} {now - t0:.0f}s" for e, t0 in self._running.values())
        return line[: shutil.get_terminal_size().columns - 1]

    def _draw(self) -> None:
        self._write(self._live_line())

    def _write(self, text: str) -> None:
        """Print ``text``; on a terminal over the live line, which is drawn again below a finished line."""
        if not self._live:
            if text.endswith("\n"):
                self._stream.write(text)
                self._stream.flush()
            return
        self._stream.write("\r\x1b[K" + text + (self._live_line() if text.endswith("\n") else ""))
        self._stream.flush()
