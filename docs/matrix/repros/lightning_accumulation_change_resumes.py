"""Reproduces: RESUME-5 (lightning 2.6.6).

The ``Trainer``'s checkpoint does not record ``accumulate_grad_batches`` (nor the batch size, so
nor the global batch size they give), and ``Trainer.fit(ckpt_path=...)`` does not compare the
resuming configuration with the saved one: a run resumed with another accumulation trains on
with another global batch size and the optimizer and schedule state of the old one. Since the
accumulation window is counted from the batch index within the epoch, which is restored, the
first step after such a resume may also take fewer micro-batches than the new setting.

The script trains one step with ``accumulate_grad_batches=1`` (4 samples per step), saves with
``ModelCheckpoint``, then resumes with ``accumulate_grad_batches=2`` (8 samples per step) to step
3, recording the warnings raised and the samples each step took. Exit 0 and ``REPRODUCED`` when
the resume trained on without an error or a warning naming the accumulation; exit 1 and
``NOT REPRODUCED`` when it was refused or warned about.
"""

import logging
import sys
import tempfile
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset


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


def trainer(
    root: Path, max_steps: int, accumulation: int, callbacks: list[pl.Callback]
) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        accumulate_grad_batches=accumulation,
        callbacks=callbacks,
        enable_checkpointing=bool(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )


def main() -> int:
    for name in ("lightning.fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(32, 4), torch.randn(32, 1)), batch_size=4)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        checkpoints = ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=1)
        saved = Regression()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the Trainer's hints about workers and logging
            trainer(root, 1, 1, [checkpoints]).fit(saved, train_dataloaders=loader)
        resumed = Regression()
        resuming = trainer(root, 3, 2, [])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                resuming.fit(
                    resumed, train_dataloaders=loader, ckpt_path=checkpoints.best_model_path
                )
            except Exception as error:
                print(f"NOT REPRODUCED: the resume was refused: {type(error).__name__}: {error}")
                return 1
    about = [str(w.message) for w in caught if "accumulat" in str(w.message).lower()]
    if about:
        print(f"NOT REPRODUCED: the resume warned about the accumulation: {about[0]}")
        return 1
    taken = ", ".join(f"step {step}: {n}" for step, n in sorted(resumed.samples_per_step.items()))
    print(
        f"REPRODUCED: saved with accumulate_grad_batches=1 ({saved.samples_per_step[1]} samples "
        "at step 1), resumed with 2 to step 3 with no error and none of its "
        f"{len(caught)} warnings about the change; samples taken: {taken}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
