"""A reported heap corruption: a rank aborted with ``malloc(): unaligned tcache chunk detected`` inside a
gloo all-gather of the full model state, in a process that also hashes tensor memory zero-copy
(``ckptspec.digest``) and hashes write buffers on a helper thread (``hashing_writer``).

This loop repeats that set-up on two ranks under glibc's and CPython's allocator checks
(``MALLOC_CHECK_=3`` aborts on a detected corruption, ``MALLOC_PERTURB_`` fills freed memory so
that a read of it changes a digest, ``PYTHONMALLOC=debug``, ``PYTHONFAULTHANDLER``). It runs
``CKPTSPEC_HEAP_LOOP`` iterations (default 3; e.g. ``CKPTSPEC_HEAP_LOOP=300`` for the long hunt).
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
from pathlib import Path

import pytest
from refimpl_launch import ENV, WORKER, _launcher, assert_valid

ITERATIONS = int(os.environ.get("CKPTSPEC_HEAP_LOOP", "3"))
CHECKED_ENV = {
    **ENV,
    "MALLOC_CHECK_": "3",
    "MALLOC_PERTURB_": "165",
    "PYTHONMALLOC": "debug",
    "PYTHONFAULTHANDLER": "1",
}
if ctypes.util.find_library(
    "c_malloc_debug"
):  # glibc >= 2.34 reads MALLOC_CHECK_ only with it preloaded
    CHECKED_ENV["LD_PRELOAD"] = str(ctypes.util.find_library("c_malloc_debug"))


@pytest.mark.slow
def test_full_state_gathers_digests_and_hashed_saves_keep_the_heap_intact(tmp_path: Path) -> None:
    params = {
        "output_dir": str(tmp_path),
        "run_id": "heap",
        "steps": ITERATIONS,
        "iterations": ITERATIONS,
    }
    out = tmp_path / "out"
    out.mkdir()
    command = [*_launcher(2), str(WORKER), str(out), json.dumps({"heap_loop": params})]
    proc = subprocess.run(
        command, env=CHECKED_ENV, capture_output=True, text=True, timeout=60 + 20 * ITERATIONS
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    assert "malloc()" not in proc.stderr and "free()" not in proc.stderr, proc.stderr[-6000:]
    for rank in range(2):
        result = json.loads((out / f"rank{rank}.json").read_text())["heap_loop"]
        assert result == {"unstable_steps": [], "steps": ITERATIONS}, result
    assert_valid(tmp_path / "heap")


def test_digest_reads_the_values_of_lazy_conjugate_and_negative_views() -> None:
    """The zero-copy digest reads raw memory: views whose values are negated lazily (conj and
    neg bits) must be materialised first, or the digest is that of other values."""
    import torch

    from ckptspec.digest import tensor_digest

    z = torch.tensor([1 + 2j, 3 - 4j])
    assert tensor_digest(z.conj()) == tensor_digest(z.conj().resolve_conj())
    x = torch.tensor([1.0, -2.5])
    assert tensor_digest(torch.ops.aten._neg_view(x)) == tensor_digest(-x)
