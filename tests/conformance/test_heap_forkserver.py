"""The reported heap corruption, on the suite's own path: a rank aborted (``malloc(): unaligned
tcache chunk detected``; seen again as ``double free or corruption (out)`` inside torch's
``wait_tensor``) in the DTensor redistribution of
``get_model_state_dict``/``get_optimizer_state_dict(full_state_dict=True)`` with gloo, in ranks
that the conformance engine forks from its ``forkserver`` (torch pre-imported). The reference
adapter's ``full_state`` now gathers with plain ``all_gather`` instead
(:func:`ckptspec.reference_impl.trainer.unsharded`).

This test repeats that set-up: ``CKPTSPEC_HEAP_LOOP`` phases (default 3; hundreds for the long
hunt) of ``Train(1), FullState(), Save()`` on two ranks of the reference adapter, each phase a
fresh run of the same seed, through :func:`ckptspec.conformance.engine.run_phase`. Every phase
must end with no crashed, missing or failed rank, the same full-state digests on both ranks and
in every phase (the runs are deterministic, so a read of freed or overwritten memory shows), and
a checkpoint that validates with ``--deep``.

How the allocator checks reach the ranks: the engine's ranks are forked from the forkserver,
and the forkserver is started, with the environment of the process that first uses it, by that
process; torch's launcher adds only the rank variables. Settings read when a process starts
(``PYTHONMALLOC``, glibc's ``MALLOC_CHECK_`` and ``MALLOC_PERTURB_``, ``LD_PRELOAD``) therefore
have to be in the environment of the process that drives the phases, so the loop runs in a
subprocess of its own (this file run as a script) rather than in pytest's process, whose
forkserver may already be running. Since glibc 2.34 ``MALLOC_CHECK_`` is honoured only with
``libc_malloc_debug.so`` preloaded, which the test does where the library exists.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ADAPTER = "ckptspec.reference_impl.adapter:ReferenceAdapter"
ITERATIONS = int(os.environ.get("CKPTSPEC_HEAP_LOOP", "3"))
PHASE_TIMEOUT_S = 180.0
SHARED_PREFIXES = ("model/", "optimizer/", "lr_scheduler/")
"""Full-state leaves that every rank holds alike (RNG and data position are per rank)."""
HEAP_ERROR = re.compile(
    r"(malloc|free|realloc|malloc_consolidate)\(\): |double free|corrupted |Fatal Python error|Debug memory block"
)
"""What glibc's and CPython's allocator checks print when they find a corrupted heap."""


def checked_env() -> dict[str, str]:
    """The environment with glibc's and CPython's allocator checks on: abort on a detected heap
    corruption (``MALLOC_CHECK_=3``, with ``libc_malloc_debug.so`` preloaded where it exists),
    fill freed memory (``MALLOC_PERTURB_``), CPython's debug allocator, and faulthandler."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        "MALLOC_CHECK_": "3",
        "MALLOC_PERTURB_": "165",
        "PYTHONMALLOC": "debug",
        "PYTHONFAULTHANDLER": "1",
    }
    debug = ctypes.util.find_library("c_malloc_debug")
    if debug:
        env["LD_PRELOAD"] = " ".join(filter(None, (os.environ.get("LD_PRELOAD"), debug)))
    return env


def _loop(base: Path, iterations: int) -> dict[str, Any]:
    """Run the phases; stop at the first failing one. The summary says how many held, what
    failed, the seconds per phase, and whether ``libc_malloc_debug`` is loaded here (so in the
    forkserver and its ranks too)."""
    from ckptspec.conformance.adapter import ScenarioConfig
    from ckptspec.conformance.engine import run_phase
    from ckptspec.conformance.phase import FullState, PhaseSpec, Save, Train
    from ckptspec.validator import validate_path

    reference: dict[int, dict[str, str]] = {}
    seconds: list[float] = []
    failure = None
    for i in range(iterations):
        config = ScenarioConfig(
            output_dir=str(base / "out"), run_id=f"heap-{i}", seed=5, total_steps=1
        )
        spec = PhaseSpec(
            ADAPTER, config, 2, (Train(1), FullState(), Save()), timeout_s=PHASE_TIMEOUT_S
        )
        result = run_phase(spec, base / f"phase-{i}")
        seconds.append(round(result.seconds, 1))
        if result.describe() != "ok":
            failure = f"phase {i}: {result.describe()}"
            break
        states = {rank: result.value(1, rank) for rank in (0, 1)}
        shared = [
            {k: v for k, v in states[rank].items() if k.startswith(SHARED_PREFIXES)}
            for rank in (0, 1)
        ]
        if not shared[0] or shared[0] != shared[1]:
            failure = f"phase {i}: the ranks' full states differ in {sorted(set(shared[0].items()) ^ set(shared[1].items()))[:3]}"
            break
        reference = reference or states
        if states != reference:
            changed = sorted(
                k for r in states for k in states[r] if states[r][k] != reference[r].get(k)
            )
            failure = f"phase {i}: the full state differs from phase 0's (same seed): {changed[:5]}"
            break
        errors = [
            f.line()
            for f in validate_path(Path(result.value(2, 0)), deep=True)
            if f.severity.value == "error"
        ]
        if errors:
            failure = f"phase {i}: the checkpoint does not validate: {errors[:3]}"
            break
    maps = Path("/proc/self/maps")
    return {
        "phases_ok": len(seconds) - (failure is not None),
        "failure": failure,
        "seconds": seconds,
        "malloc_debug_loaded": maps.exists() and "libc_malloc_debug" in maps.read_text(),
    }


@pytest.mark.slow
def test_forkserver_ranks_gather_full_state_and_save_with_the_heap_intact(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path), str(ITERATIONS)],
        env=checked_env(),
        capture_output=True,
        text=True,
        timeout=120 + (PHASE_TIMEOUT_S + 30) * ITERATIONS,
    )
    tail = f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert proc.returncode == 0, tail
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"heap loop: {summary} in {time.monotonic() - started:.0f} s")
    assert summary["failure"] is None and summary["phases_ok"] == ITERATIONS, summary
    assert summary["malloc_debug_loaded"] or not ctypes.util.find_library("c_malloc_debug"), summary
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("phase-*/logs/**/*.log"))
    assert not HEAP_ERROR.search(logs + proc.stderr), (logs + proc.stderr)[-6000:]


if __name__ == "__main__":
    print(json.dumps(_loop(Path(sys.argv[1]), int(sys.argv[2]))), flush=True)
