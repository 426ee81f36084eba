"""Reproduces: COMMIT-5 (lightning 2.6.6).

``Fabric.save`` and ``Trainer.save_checkpoint`` (which ``ModelCheckpoint`` calls) both write the
checkpoint through ``lightning.fabric.utilities.cloud_io._atomic_save``: the checkpoint is
serialised to memory, written to a temporary file through an fsspec transaction and moved into
place. Neither the file nor the directory that receives it is fsynced before the save returns, so
a power loss after a returned save may lose the checkpoint or leave it empty.

The script records the path of every ``os.fsync`` / ``os.fdatasync``, then saves once with
``fabric.save`` and once through ``ModelCheckpoint`` in a one-step ``Trainer.fit``, each into a
new ``checkpoints`` directory. Exit 0 and ``REPRODUCED`` when a written ``.ckpt``, its directory
or the parent of that new directory was not fsynced; exit 1 and ``NOT REPRODUCED`` when all were.
"""

import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.fabric import Fabric
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

fsynced: set[str] = set()
real_fsync, real_fdatasync = os.fsync, os.fdatasync


def recording_fsync(fd: int) -> None:
    fsynced.add(os.readlink(f"/proc/self/fd/{fd}"))
    real_fsync(fd)


def recording_fdatasync(fd: int) -> None:
    fsynced.add(os.readlink(f"/proc/self/fd/{fd}"))
    real_fdatasync(fd)


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def save_with_fabric(run: Path) -> None:
    fabric = Fabric(accelerator="cpu", devices=1)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    fabric.save(run / "checkpoints" / "step-1.ckpt", {"model": model, "optimizer": optimizer})


def save_with_trainer(run: Path) -> None:
    data = TensorDataset(torch.randn(8, 4), torch.randn(8, 1))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=1,
        callbacks=[ModelCheckpoint(dirpath=run / "checkpoints", every_n_train_steps=1)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=run,
    )
    trainer.fit(Regression(), train_dataloaders=DataLoader(data, batch_size=4))


def not_fsynced(run: Path) -> list[str]:
    """The run's ``.ckpt`` files, their directories and the run directory that were not fsynced."""
    files = sorted(run.glob("checkpoints/*.ckpt"))
    if not files:
        raise RuntimeError(f"no checkpoint was written under {run}")
    needed = [*files, *sorted({f.parent for f in files}), run]
    return [str(p.relative_to(run.parent)) for p in needed if str(p) not in fsynced]


def main() -> int:
    for name in ("lightning.fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")  # the Trainer's hints about workers and logging
    os.fsync, os.fdatasync = recording_fsync, recording_fdatasync
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory).resolve()  # as /proc/self/fd names the fsynced paths
        fabric_run, trainer_run = root / "fabric", root / "trainer"
        fabric_run.mkdir()
        trainer_run.mkdir()
        save_with_fabric(fabric_run)
        save_with_trainer(trainer_run)
        missing = {"fabric.save": not_fsynced(fabric_run)}
        missing["ModelCheckpoint"] = not_fsynced(trainer_run)
    if any(missing.values()):
        found = "; ".join(f"{saver}: {', '.join(paths)}" for saver, paths in missing.items())
        print(
            f"REPRODUCED: returned without fsyncing {found} ({len(fsynced)} paths fsynced in all)"
        )
        return 0
    print("NOT REPRODUCED: every checkpoint file and its directories were fsynced")
    return 1


if __name__ == "__main__":
    sys.exit(main())
