"""Both sides of a :class:`~ckptspec.conformance.phase.Hold` action: the test's :class:`Gate` and
the held rank's :func:`arrive_and_wait`, meeting at two FIFOs in a fresh directory.

No polling, no sleeps: each wait is a blocking read that the phase's engine deadline bounds.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path
from typing import Any

ARRIVED = "arrived"
RELEASE = "release"
_ARRIVED_BYTE = b"A"
_ENDED_BYTE = b"E"


class Gate:
    """The test's side: :meth:`reached` returns once the held phase's rank 0 arrived (True) or
    the phase ended without arriving (False); :meth:`release` lets it go on."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        os.mkfifo(directory / ARRIVED)
        os.mkfifo(directory / RELEASE)
        # Read-write: rank 0's open for writing never blocks, and the phase's end can post too.
        self._arrived = os.open(directory / ARRIVED, os.O_RDWR)

    def watch(self, phase: Future[Any]) -> None:
        """Make :meth:`reached` return False if ``phase`` ends before arriving."""
        phase.add_done_callback(lambda _: os.write(self._arrived, _ENDED_BYTE))

    def reached(self) -> bool:
        """Block until the held phase arrives at the gate (True) or ends (False)."""
        return os.read(self._arrived, 1) == _ARRIVED_BYTE

    def release(self) -> bool:
        """Let the held phase continue; False if no rank waits at the gate any more."""
        try:
            fd = os.open(self.directory / RELEASE, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader, the phase is gone
            return False
        try:
            os.write(fd, b"R")
        finally:
            os.close(fd)
        return True

    def close(self) -> None:
        """Close the test's end of the gate."""
        os.close(self._arrived)


def arrive_and_wait(directory: str) -> None:
    """The held rank's side: say "arrived" through the gate's ``arrived`` FIFO, then block until
    the test writes to its ``release`` FIFO (opened read-write, so that the read waits for data
    rather than seeing end-of-file before the test opens it)."""
    release = os.open(os.path.join(directory, RELEASE), os.O_RDWR)
    try:
        with open(os.path.join(directory, ARRIVED), "wb") as arrived:
            arrived.write(_ARRIVED_BYTE)
        os.read(release, 1)
    finally:
        os.close(release)
