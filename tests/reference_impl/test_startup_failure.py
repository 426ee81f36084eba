"""A writer's start-up never strands a rank in a collective (RUN-8): whatever fails on rank 0
while it claims and recovers the run is raised, as one typed error, on every rank.

The test launches this file on two ranks (``torch.distributed.run``); each rank runs the
scenarios below and writes what it raised to ``OUT/rank<r>.json``. The collective timeout is
60 s, so a rank left waiting in the broadcast fails the test instead of hanging it.
"""

from __future__ import annotations

import errno
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

RUN_ID = "run"


def _outcome(policy: Any) -> dict[str, Any]:
    """Start ``policy`` up; what it raised (type, code, message), or None."""
    from ckptspec.errors import CheckpointError

    try:
        policy.startup()
    except CheckpointError as exc:
        return {"type": type(exc).__name__, "code": exc.code, "message": exc.message}
    policy.close()
    return {"type": None}


def _ranks(out: Path, base: Path) -> None:
    """Every rank: start-up fails on rank 0 (1) reading ``run.json`` after the claim, (2) creating
    the run directory; then (3) a plain start-up shows the claim was released."""
    import torch.distributed as dist

    from ckptspec.checkpointing import RunPolicy
    from ckptspec.checkpointing.distributed import exit_process, init_distributed
    from ckptspec.run_index import RunIndex

    class UnreadableIndex(RunPolicy):
        def _read_index(self) -> RunIndex | None:
            raise OSError(errno.EIO, "Input/output error", str(self.run_dir / "run.json"))

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    ctx = init_distributed("cpu")
    (base / "a-file").touch()
    results = {
        "unreadable_index": _outcome(UnreadableIndex(base / RUN_ID, RUN_ID, ctx)),
        "uncreatable_dir": _outcome(RunPolicy(base / "a-file" / RUN_ID, RUN_ID, ctx)),
        "claim_released": _outcome(RunPolicy(base / RUN_ID, RUN_ID, ctx)),
    }
    Path(out, f"rank{ctx.rank}.json").write_text(json.dumps(results))
    exit_process(0)


@pytest.mark.slow
def test_start_up_failure_on_rank_0_is_raised_on_every_rank(tmp_path: Path) -> None:
    from refimpl_launch import _launcher, _run

    out, base = tmp_path / "out", tmp_path / "runs"
    out.mkdir()
    base.mkdir()
    proc = _run([*_launcher(2), __file__, str(out), str(base)])
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1], "the ranks raised different errors"
    unreadable = ranks[0]["unreadable_index"]
    assert (unreadable["type"], unreadable["code"]) == ("RunStartupError", "RUN_STARTUP")
    assert "OSError" in unreadable["message"] and "Input/output error" in unreadable["message"], (
        unreadable
    )
    uncreatable = ranks[0]["uncreatable_dir"]
    assert (uncreatable["type"], uncreatable["code"]) == ("RunLockedError", "RUN_LOCKED")
    assert "cannot create the run directory" in uncreatable["message"], uncreatable
    assert ranks[0]["claim_released"] == {"type": None}, "the failed start-up kept the run's lock"


if __name__ == "__main__":
    _ranks(Path(sys.argv[1]), Path(sys.argv[2]))
