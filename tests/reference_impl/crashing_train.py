"""The reference trainer's command line with crash points injected from the test side.

    torchrun ... crashing_train.py [--crash-at-step N] [--crash-during-save N] <train.py options>

``--crash-at-step N``: every rank dies by SIGKILL right after optimizer step N (after a barrier,
so every rank finished it). ``--crash-during-save N``: rank 0 dies by SIGKILL inside the commit
of step N, after it wrote a complete ``manifest.json`` into the staging directory and before the
rename; the launcher then stops the other ranks. The trainer itself has no crash hooks: they are
patched in here, around :meth:`Trainer.train_step` and :meth:`CommitProtocol._publish`.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import torch.distributed as dist

from ckptspec.checkpointing import CommitProtocol
from ckptspec.checkpointing.distributed import exit_process
from ckptspec.layout import checkpoint_dir_name
from ckptspec.reference_impl import train
from ckptspec.reference_impl.trainer import Trainer


def _install(crash_at_step: int | None, crash_during_save: int | None) -> None:
    if crash_at_step is not None:
        train_step = Trainer.train_step

        def crashing_train_step(self: Trainer):  # type: ignore[no-untyped-def]
            record = train_step(self)
            if self.global_step == crash_at_step:
                self.log(f"crash step {self.global_step:5d} | SIGKILL")
                dist.barrier()
                os.kill(os.getpid(), signal.SIGKILL)
            return record

        Trainer.train_step = crashing_train_step  # type: ignore[method-assign]
    if crash_during_save is not None:
        publish = CommitProtocol._publish

        def crashing_publish(self: CommitProtocol, staging: Path, final: Path) -> None:
            if final.name == checkpoint_dir_name(crash_during_save):
                os.kill(os.getpid(), signal.SIGKILL)
            publish(self, staging, final)

        CommitProtocol._publish = crashing_publish  # type: ignore[method-assign]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--crash-at-step", type=int, default=None)
    parser.add_argument("--crash-during-save", type=int, default=None)
    crashes, rest = parser.parse_known_args()
    _install(crashes.crash_at_step, crashes.crash_during_save)
    exit_process(train.main(rest))
