"""Reproduces: RESUME-3 (lightning 2.6.6).

Under ``strategy="ddp"`` the ``Trainer`` writes one ``.ckpt`` from rank 0 and records neither the
world size nor any per-rank state in it (the data position is the loop's batch counters, the CPU
RNG is not saved). ``Trainer.fit(ckpt_path=...)`` at another world size therefore resumes with
another global batch size and another split of the data across ranks, without an error and
without a warning about the change, and the trainer declares no elastic policy.

The script trains one step at 2 ranks (2 processes, gloo on CPU, 4 samples per rank) and saves
with ``ModelCheckpoint``, then resumes that checkpoint in a single process to step 2. Exit 0 and
``REPRODUCED`` when the single-process resume trained on without an error or a warning naming
the world size; exit 1 and ``NOT REPRODUCED`` when it was refused or warned about.
"""

import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

SEED = 0
SAMPLES, BATCH = 32, 4


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
        self.samples_per_step: dict[int, int] = {}

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        step = self.trainer.global_step + 1
        self.samples_per_step[step] = self.samples_per_step.get(step, 0) + len(x)
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def quiet() -> None:
    for name in ("lightning.fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")  # the Trainer's hints about workers and logging


def train(root: Path, ranks: int, max_steps: int, ckpt_path: Path | None = None) -> pl.Trainer:
    pl.seed_everything(SEED, verbose=False)
    data = torch.Generator().manual_seed(SEED)
    dataset = TensorDataset(
        torch.randn(SAMPLES, 4, generator=data), torch.randn(SAMPLES, 1, generator=data)
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        strategy="ddp" if ranks > 1 else "auto",
        devices=ranks,
        max_steps=max_steps,
        callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=1)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(
        Regression(),
        train_dataloaders=DataLoader(dataset, batch_size=BATCH, shuffle=True),
        ckpt_path=ckpt_path,
    )
    return trainer


def save_at_two_ranks(rank: int, root: Path) -> None:
    # With LOCAL_RANK set, Lightning treats the processes as launched for it and takes the
    # process group already initialised here.
    os.environ.update(LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE="2")
    dist.init_process_group(
        "gloo", init_method=f"file://{root / 'rendezvous'}", rank=rank, world_size=2
    )
    quiet()
    trainer = train(root, 2, 1)
    if trainer.world_size != 2 or trainer.lightning_module.samples_per_step != {1: BATCH}:
        raise RuntimeError(f"rank {rank} did not train one step at world size 2")
    dist.destroy_process_group()


def main() -> int:
    quiet()
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        # Forked, not spawned: the children then skip Lightning's import (about 10 s).
        mp.start_processes(save_at_two_ranks, args=(root,), nprocs=2, start_method="fork")
        (checkpoint,) = root.glob("checkpoints/*.ckpt")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                trainer = train(root, 1, 2, checkpoint)
            except Exception as error:
                print(f"NOT REPRODUCED: the resume was refused: {type(error).__name__}: {error}")
                return 1
    about = [str(w.message) for w in caught if "world" in str(w.message).lower()]
    if about:
        print(f"NOT REPRODUCED: the resume warned about the world size: {about[0]}")
        return 1
    taken = trainer.lightning_module.samples_per_step
    print(
        f"REPRODUCED: a checkpoint saved at 2 ranks ({2 * BATCH} samples per step) resumed in one "
        f"process to step {trainer.global_step} with no error and none of its {len(caught)} "
        f"warnings about the world size; step 2 took {taken[2]} samples"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
