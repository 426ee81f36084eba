"""One-process tests of the reference writer: the run lock (RUN-8), saves that fail at the wrong
moment (ENOSPC before and after the commit rename), and the trainer CLI's exit status.

Each test runs in this process with a fresh world of one (gloo over an in-memory store).
"""

from __future__ import annotations

import errno
import json
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch.distributed as dist
from refimpl_launch import ENV, snapshot

from ckptspec.checkpointing import CommittedWithWarning, RunPolicy, SaveError
from ckptspec.checkpointing.distributed import init_distributed
from ckptspec.checkpointing.hashing_writer import _HashingStream
from ckptspec.errors import RunLockedError
from ckptspec.layout import LAYOUT, checkpoint_dir_name, is_staging_dir, staging_dir_name
from ckptspec.reference_impl import train as train_cli
from ckptspec.reference_impl.config import TrainConfig
from ckptspec.reference_impl.trainer import Trainer
from ckptspec.run_check import check_run

pytestmark = pytest.mark.slow  # starts torch processes or process groups: not in `make test-fast`

RUN_ID = "run"


@pytest.fixture(autouse=True)
def world_of_one() -> Iterator[None]:
    init_distributed("cpu")
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def _trainer(output_dir: Path, **settings: object) -> Trainer:
    config = TrainConfig(
        output_dir=str(output_dir), run_id=RUN_ID, steps=4, seed=3, global_batch_size=12, **settings
    )  # type: ignore[arg-type]
    return Trainer(config, init_distributed("cpu"))


def _policy(output_dir: Path) -> RunPolicy:
    return RunPolicy(output_dir / RUN_ID, RUN_ID, init_distributed("cpu"))


def test_second_writer_is_refused_before_touching_anything(tmp_path: Path) -> None:
    first = _policy(tmp_path)
    first.startup()
    run_dir = tmp_path / RUN_ID
    in_flight = run_dir / staging_dir_name(7, "ab" * 16)  # the live writer's save in progress
    in_flight.mkdir()
    (in_flight / "payload").write_bytes(b"being written")
    before = snapshot(run_dir)
    second = _policy(tmp_path)
    with pytest.raises(RunLockedError) as refused:
        second.startup()
    assert refused.value.code == "RUN_LOCKED" and refused.value.requirement == "RUN-8"
    assert snapshot(run_dir) == before, "the refused writer changed the run directory"
    first.close()
    second.startup()  # the claim is free again; stale staging is cleaned only now
    assert not any(is_staging_dir(p.name) for p in run_dir.iterdir())
    second.close()


def test_claim_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys; from pathlib import Path; import torch\n"
                "from ckptspec.checkpointing import RunPolicy, init_distributed\n"
                f"m = RunPolicy(Path(sys.argv[1]) / {RUN_ID!r}, {RUN_ID!r}, init_distributed('cpu'))\n"
                "m.startup(); print('held', flush=True); sys.stdin.read()\n"
            ),
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=ENV,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError):
            _policy(tmp_path).startup()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert holder.returncode == -signal.SIGKILL
    claimed = _policy(tmp_path)
    claimed.startup()  # no manual clean-up: the kernel dropped the dead writer's lock
    claimed.close()


def test_index_failure_after_the_rename_is_a_warning_and_is_repaired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = _trainer(tmp_path, keep_last=1)
    trainer.train(1)
    trainer.save()
    original = RunPolicy._write_index

    def no_space(self: RunPolicy) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RunPolicy, "_write_index", no_space)
    trainer.train(1)
    with pytest.warns(CommittedWithWarning, match="step 2 is committed"):
        path = trainer.save()  # returns: the save is committed
    run_dir = tmp_path / RUN_ID
    assert path == run_dir / checkpoint_dir_name(2) and (path / LAYOUT.manifest_file).is_file()
    assert trainer.policy.committed_steps() == [1, 2], (
        "retention ran although the commit did not fully succeed"
    )
    assert json.loads((run_dir / LAYOUT.run_index_file).read_text())["latest_step"] == 1
    monkeypatch.setattr(RunPolicy, "_write_index", original)
    trainer.policy.close()
    restarted = _trainer(tmp_path, keep_last=1)
    restarted.resume()  # start-up repairs run.json from the directories
    assert json.loads((run_dir / LAYOUT.run_index_file).read_text())["latest_step"] == 2
    assert [f.code for f in check_run(str(run_dir)) if f.severity.value == "error"] == []
    restarted.train(1)
    restarted.save()
    assert restarted.policy.committed_steps() == [3]


def test_enospc_inside_the_checkpoint_library_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch raises CheckpointException (a BaseException) for a failed write: the save fails with
    SaveError, commits nothing and removes its staging directory."""

    def no_space(self: _HashingStream, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    trainer = _trainer(tmp_path)
    trainer.train(1)
    monkeypatch.setattr(_HashingStream, "write", no_space)
    with pytest.raises(SaveError, match="was not committed"):
        trainer.save()
    run_dir = tmp_path / RUN_ID
    assert trainer.policy.committed_steps() == []
    assert sorted(p.name for p in run_dir.iterdir()) == [LAYOUT.lock_file], (
        "the failed save left files behind"
    )


def _cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        status = train_cli.main(
            ["--output-dir", str(tmp_path), "--run-id", RUN_ID, "--steps", "1", "--device", "cpu"]
        )
    return status, capsys.readouterr().err


def test_cli_refusal_and_save_failure_exit_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = _policy(tmp_path)
    holder.startup()
    status, err = _cli(tmp_path, capsys)
    assert status == train_cli.EXIT_REFUSED and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: RunLockedError: [RUN_LOCKED]"), err
    holder.close()

    def no_space(self: _HashingStream, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    init_distributed("cpu")  # main() destroyed the group
    monkeypatch.setattr(_HashingStream, "write", no_space)
    status, err = _cli(tmp_path, capsys)
    assert status == train_cli.EXIT_SAVE_FAILED and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(
        "error: SaveError: checkpoint of step 1 was not committed"
    ), err


def test_validator_sees_what_a_second_writer_leaves(tmp_path: Path) -> None:
    """A rewind whose discarded step is still committed by an older save is a CONCURRENT_WRITERS
    error, one missing from its fork directory a REWIND_RECORD error; the genuine rewind validates."""
    trainer = _trainer(tmp_path)
    for _ in range(3):
        trainer.train(1)
        trainer.save()
    run_dir = tmp_path / RUN_ID
    trainer.resume(str(run_dir / checkpoint_dir_name(1)))
    trainer.train(1)
    trainer.save()  # forks: steps 2 and 3 move to .rewound/<fork>/
    assert [f.line() for f in check_run(str(run_dir)) if f.severity.value == "error"] == []
    fork = next((run_dir / LAYOUT.rewound_dir).iterdir())
    shutil.copytree(
        fork / checkpoint_dir_name(3), run_dir / checkpoint_dir_name(3)
    )  # as if never moved
    shutil.rmtree(fork / checkpoint_dir_name(2))
    found = check_run(str(run_dir))
    concurrent = [f.message for f in found if f.code == "CONCURRENT_WRITERS"]
    assert (
        len(concurrent) == 1
        and "discarded step 3" in concurrent[0]
        and "created earlier" in concurrent[0]
    ), concurrent
    messages = [f.message for f in found if f.code == "REWIND_RECORD"]
    assert (
        len(messages) == 1
        and "discarding step 2" in messages[0]
        and "does not exist" in messages[0]
    ), messages
