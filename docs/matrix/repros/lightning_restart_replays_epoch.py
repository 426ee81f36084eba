"""Reproduces: RUN-9 (lightning 2.6.6).

A ``Trainer`` run restarted from a checkpoint saved in the middle of an epoch does not draw the
samples the uninterrupted run draws next. The checkpoint restores the loop's batch counters, but a
plain shuffled ``DataLoader`` has no state the ``Trainer`` can restore, so the resumed epoch opens
a new iterator and starts again from its first batch; the ``Trainer`` only warns that the
dataloader "is not resumable".

The script trains 3 steps uninterrupted (``seed_everything``, ``shuffle=True``), noting the sample
ids of each step; then the same run for 1 step with ``ModelCheckpoint``, resumed to step 3 with
``fit(ckpt_path=...)`` in another process, forked before any training. Exit 0 and ``REPRODUCED``
when step 2 of the restarted run took other samples than step 2 of the uninterrupted one; exit 1
and ``NOT REPRODUCED`` when they match.
"""

import logging
import multiprocessing
import os
import sys
import tempfile
import warnings
from multiprocessing.connection import Connection
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

SEED = 0
SAMPLES, BATCH = 16, 4


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
        self.ids: dict[int, list[int]] = {}

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        ids, x, y = batch
        self.ids[self.trainer.global_step + 1] = ids.tolist()
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def train(root: Path, max_steps: int, ckpt_path: Path | None = None) -> dict[int, list[int]]:
    """Trains to ``max_steps`` (saving every step), as a fresh process would; the ids per step."""
    pl.seed_everything(SEED, verbose=False)
    data = torch.Generator().manual_seed(SEED)
    dataset = TensorDataset(
        torch.arange(SAMPLES),
        torch.randn(SAMPLES, 4, generator=data),
        torch.randn(SAMPLES, 1, generator=data),
    )
    module = Regression()
    pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=1)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    ).fit(
        module,
        train_dataloaders=DataLoader(dataset, batch_size=BATCH, shuffle=True),
        ckpt_path=ckpt_path,
    )
    return module.ids


def quiet() -> None:
    for name in ("lightning.fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")  # the Trainer's hints about workers and logging


def restarted_run(connection: Connection) -> None:
    """The restarted run: resumes the checkpoint it is sent to step 3; sends back its ids per step
    and whether the Trainer warned that the dataloader is not resumable."""
    root, checkpoint = connection.recv()
    quiet()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = train(root, 3, checkpoint)
    connection.send((ids, any("dataloader is not resumable" in str(w.message) for w in caught)))


def main() -> int:
    quiet()
    os.environ["OMP_NUM_THREADS"] = "1"
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    # Forked before any training, so it starts as a fresh process does, without importing
    # Lightning again (about 10 s); it waits for the checkpoint on the pipe.
    restart = context.Process(target=restarted_run, args=(theirs,))
    restart.start()
    theirs.close()
    with tempfile.TemporaryDirectory() as directory:
        uninterrupted = train(Path(directory, "uninterrupted"), 3)
        restarted = Path(directory, "restarted")
        before = train(restarted, 1)
        (checkpoint,) = restarted.glob("checkpoints/*.ckpt")
        ours.send((restarted, checkpoint))
        resumed, warned = ours.recv()
        restart.join()
    expected, got = uninterrupted[2], resumed[2]
    if got == expected:
        print(f"NOT REPRODUCED: step 2 of the restarted run took the same samples {got}")
        return 1
    replay = " (step 1's samples again)" if got == before[1] else ""
    warning = "; the Trainer warned that the dataloader is not resumable" if warned else ""
    print(
        f"REPRODUCED: after a restart at step 1, step 2 took samples {got}{replay}, "
        f"the uninterrupted run's step 2 took {expected}{warning}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
