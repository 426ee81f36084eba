"""``ckptspec conformance`` reports each phase as it ends (test, phase index, world size, actions,
how it ended, seconds), with and without pytest-xdist, and keeps a live line on a terminal."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from suite_run import run_conformance_cli

from ckptspec.conformance import progress
from ckptspec.conformance.phase import Evaluate, FullState, Save

HERE = Path(__file__).resolve().parent
LINE = re.compile(
    r"\[(?P<worker>main|gw\d+)\] (?P<test>\S+) phase (?P<phase>\d+) ws=(?P<ws>\d+) (?P<actions>[A-Za-z,]+): "
    r"(?P<status>.+) in (?P<seconds>\d+\.\d)s \(test (?P<test_seconds>\d+\.\d)s\)"
)


@pytest.mark.slow
@pytest.mark.parametrize("workers", [None, "2"], ids=["one-process", "xdist"])
def test_every_phase_is_reported_once(tmp_path: Path, workers: str | None) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    for inherited in (
        progress.PROGRESS_ENV,
        "PYTEST_XDIST_WORKER",
    ):  # this test may itself run in an xdist worker
        env.pop(inherited, None)
    proc = run_conformance_cli(
        tmp_path,
        "--adapter",
        "toy_adapter:ToyAdapter",
        "-k",
        "test_full_state_is_canonical",
        *(["-n", workers] if workers else []),
        env=env,
        timeout=300,
    )
    assert "1 failed" in proc.stdout or "1 passed" in proc.stdout, (
        proc.stdout[-3000:] + proc.stderr[-3000:]
    )
    reported = [m for m in map(LINE.fullmatch, proc.stderr.splitlines()) if m]
    # The harness's own log of the session: one line per phase, "<seconds>s ws=<n> <actions> missing=[...]".
    logged = (tmp_path / "bt" / "ckptspec-shared" / "phases.log").read_text().splitlines()
    assert logged and len(reported) == len(logged), proc.stderr
    assert [(f"ws={m['ws']}", m["actions"]) for m in reported] == [
        tuple(line.split()[1:3]) for line in logged
    ]
    for index, m in enumerate(reported, start=1):
        assert m["test"] == "test_full_state_is_canonical" and int(m["phase"]) == index
        assert m["worker"] == "main" if workers is None else m["worker"].startswith("gw")
        assert "FullState" in m["actions"].split(",")
        assert 0 < float(m["seconds"]) <= float(m["test_seconds"])
    assert not re.search(r"^[.FEsx]+ *(\[\s*\d+%\])?$", proc.stdout, re.M), (
        "progress dots beside the progress lines"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_live_line_and_a_log_gets_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = {"tty": _Terminal(), "log": io.StringIO()}
    monkeypatch.delenv(
        "PYTEST_XDIST_WORKER", raising=False
    )  # this test may itself run in an xdist worker
    for name, stream in streams.items():
        monkeypatch.setenv("PYTEST_CURRENT_TEST", f"suite/test_{name}.py::test_{name}[a b] (call)")
        (tmp_path / name).mkdir()
        with progress.ProgressPrinter(tmp_path / name, stream) as printer:
            monkeypatch.setenv(progress.PROGRESS_ENV, str(printer.path))
            first = progress.phase_started(2, [Save()])
            progress.phase_ended(first, 2, [Save()], 1.25, "done")
            second = progress.phase_started(3, [Evaluate(shards=((0,),)), FullState()])
        assert not printer.path.exists()
        assert second == (f"test_{name}[a b]", 2)
    log = streams["log"].getvalue()
    assert log.splitlines()[0].startswith(
        "[main] test_log[a b] phase 1 ws=2 Save: done in 1.2s (test "
    )
    assert len(log.splitlines()) == 1 and "\x1b" not in log  # a log gets finished phases only
    tty = streams["tty"].getvalue()
    assert "\r\x1b[K[main] test_tty[a b] phase 1 ws=2 Save 0s" in tty  # live while it ran
    assert "phase 1 ws=2 Save: done in 1.2s" in tty
    assert tty.rstrip().endswith(
        "\r\x1b[K[main] test_tty[a b] phase 2 ws=3 Evaluate,FullState 0s\r\x1b[K"
    )


def test_without_a_reader_events_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.mkfifo(tmp_path / "orphan.fifo")
    for target in ("orphan.fifo", "absent.fifo"):
        monkeypatch.setenv(progress.PROGRESS_ENV, str(tmp_path / target))
        started = progress.phase_started(
            1, [Save()]
        )  # returns at once: nobody reads, nothing blocks
        progress.phase_ended(started, 1, [Save()], 0.5, "done")
