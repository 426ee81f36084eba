"""Reproduces: RESUME-8 (lightning 2.6.6).

Neither of Lightning's checkpoints holds the CPU RNG state. ``fabric.save`` writes the objects it
is given (model, optimizer, ...) and ``fabric.load`` restores those; the ``Trainer``'s checkpoint
(``epoch``, ``global_step``, ``state_dict``, ``loops``, ``callbacks``, ``optimizer_states``,
``lr_schedulers``, ...) has no RNG entry either, so ``Trainer.fit(ckpt_path=...)`` leaves the
generator wherever the restarted process left it. After a resume, dropout draws other masks than
the uninterrupted run.

The script trains a model with dropout for one step and saves (``fabric.save``, and
``trainer.save_checkpoint`` at the end of the step), noting ``torch.get_rng_state()`` at the save.
It then restarts in the same process as a fresh one would (re-seed, rebuild the model) and resumes
(``fabric.load``; ``Trainer.fit(ckpt_path=...)``, read at ``on_train_start``). Exit 0 and
``REPRODUCED`` when the RNG state after a resume differs from the saved one; exit 1 and
``NOT REPRODUCED`` when both resumes restored it.
"""

import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.fabric import Fabric
from torch.utils.data import DataLoader, TensorDataset

SEED = 0


def build_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(4, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1)
    )


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = build_model()

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


class SaveAfterStep(pl.Callback):
    """Saves at the end of step 1 and notes the CPU RNG state there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rng_at_save: torch.Tensor | None = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, index: int
    ) -> None:
        trainer.save_checkpoint(self.path)
        self.rng_at_save = torch.get_rng_state()


class RngAtTrainStart(pl.Callback):
    def __init__(self) -> None:
        self.rng: torch.Tensor | None = None

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.rng = torch.get_rng_state()


def trainer(root: Path, max_steps: int, callback: pl.Callback) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        callbacks=[callback],
        enable_checkpointing=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )


def restart(saved: torch.Tensor) -> None:
    """Re-seeds as a restarted run does; checks the generator then differs from ``saved``."""
    torch.manual_seed(SEED)
    if torch.equal(torch.get_rng_state(), saved):
        raise RuntimeError("the re-seeded generator equals the saved one: nothing to tell apart")


def fabric_case(path: Path, data: TensorDataset) -> str | None:
    """What ``fabric.load`` did to the CPU RNG, or ``None`` if it restored the saved state."""
    fabric = Fabric(accelerator="cpu", devices=1)
    torch.manual_seed(SEED)
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    x, y = data.tensors
    fabric.backward(F.mse_loss(model(x), y))
    optimizer.step()
    fabric.save(path, {"model": model, "optimizer": optimizer})
    saved = torch.get_rng_state()

    restart(saved)
    model = build_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = fabric.setup(model, optimizer)
    before = torch.get_rng_state()
    fabric.load(path, {"model": model, "optimizer": optimizer})
    after = torch.get_rng_state()
    if torch.equal(after, saved):
        return None
    if torch.equal(after, before):
        return "fabric.load left the CPU RNG as the restarted process had it"
    return "fabric.load set the CPU RNG to a state other than the saved one"


def trainer_case(root: Path, data: TensorDataset) -> str | None:
    """What ``Trainer.fit(ckpt_path=...)`` left of the saved RNG state, or ``None`` if restored."""
    loader = DataLoader(data, batch_size=4)
    path = root / "step-1.ckpt"
    saving = SaveAfterStep(path)
    torch.manual_seed(SEED)
    trainer(root, 1, saving).fit(Regression(), train_dataloaders=loader)
    assert saving.rng_at_save is not None
    keys = sorted(torch.load(path, weights_only=False))

    restart(saving.rng_at_save)
    resumed = RngAtTrainStart()
    trainer(root, 2, resumed).fit(Regression(), train_dataloaders=loader, ckpt_path=path)
    assert resumed.rng is not None
    if torch.equal(resumed.rng, saving.rng_at_save):
        return None
    return f"Trainer.fit(ckpt_path=...) trains on from another state (checkpoint keys: {keys})"


def main() -> int:
    for name in ("lightning.fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")  # the Trainer's hints about workers and logging
    data = TensorDataset(torch.randn(8, 4), torch.randn(8, 1))
    with tempfile.TemporaryDirectory() as directory:
        cases = [fabric_case(Path(directory, "fabric.ckpt"), data)]
        cases.append(trainer_case(Path(directory), data))
    found = [case for case in cases if case]
    if found:
        print(f"REPRODUCED: the CPU RNG state at the save is not restored: {'; '.join(found)}")
        return 0
    print("NOT REPRODUCED: fabric.load and Trainer.fit(ckpt_path=...) restored the saved CPU RNG")
    return 1


if __name__ == "__main__":
    sys.exit(main())
