"""Reproduces: RESUME-6 (lightning 2.6.6).

A Lightning ``.ckpt`` is a ``torch.save`` zip archive written by ``Trainer.save_checkpoint`` /
``ModelCheckpoint`` or ``fabric.save``; it carries no digest of its own, and
``Trainer.fit(ckpt_path=...)`` and ``fabric.load`` read it with ``torch.load``, which does not check
the CRC-32 that the zip directory holds for each record. A bit flipped in a tensor's bytes is
loaded into the model and training goes on.

The script saves a checkpoint after one step with ``ModelCheckpoint`` and one with ``fabric.save``,
flips one mantissa bit of the first element of the model weight in each file, then resumes the
first with ``Trainer.fit(ckpt_path=...)`` and loads the second with ``fabric.load``. Exit 0 and
``REPRODUCED`` when a resume went through with the damaged weight; exit 1 and ``NOT REPRODUCED``
when both refused the damaged files.
"""

import logging
import struct
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.fabric import Fabric
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 4)
        self.weight_at_train_start: torch.Tensor | None = None

    def on_train_start(self) -> None:
        self.weight_at_train_start = self.net.weight.detach().clone()

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def flip_bit(path: Path, tensor: torch.Tensor) -> None:
    """Flips one mantissa bit of ``tensor``'s first element in its record of the zip at ``path``."""
    payload = tensor.contiguous().numpy().tobytes()
    with zipfile.ZipFile(path) as archive:
        (entry,) = [e for e in archive.infolist() if archive.read(e) == payload]
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack_from("<HH", data, entry.header_offset + 26)
    data[entry.header_offset + 30 + name_length + extra_length + 2] ^= 0x10
    path.write_bytes(data)


def trainer(root: Path, max_steps: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        callbacks=callbacks,
        enable_checkpointing=bool(callbacks),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )


def trainer_resume(root: Path) -> str | None:
    """Saves at step 1, flips a bit, resumes to step 2; what was resumed, or ``None`` if refused."""
    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 4)), batch_size=4)
    checkpoints = ModelCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=1)
    trainer(root, 1, [checkpoints]).fit(Regression(), train_dataloaders=loader)
    path = Path(checkpoints.best_model_path)
    saved = torch.load(path, weights_only=True)["state_dict"]["net.weight"]
    flip_bit(path, saved)
    module = Regression()
    resumed = trainer(root, 2, [])
    try:
        resumed.fit(module, train_dataloaders=loader, ckpt_path=path)
    except Exception:
        return None
    assert module.weight_at_train_start is not None
    loaded = module.weight_at_train_start[0, 0].item()
    if loaded == saved[0, 0].item():
        raise RuntimeError("the resumed model does not hold the flipped value")
    return (
        f"Trainer.fit(ckpt_path=...) resumed with net.weight[0, 0] = {loaded:.6f} "
        f"(saved {saved[0, 0].item():.6f}) and trained to step {resumed.global_step}"
    )


def fabric_load(root: Path) -> str | None:
    """Saves with ``fabric.save``, flips a bit, loads; what was loaded, or ``None`` if refused."""
    fabric = Fabric(accelerator="cpu", devices=1)
    path = root / "step-1.ckpt"
    fabric.save(path, {"model": fabric.setup(torch.nn.Linear(4, 4))})
    saved = torch.load(path, weights_only=True)["model"]["weight"]
    flip_bit(path, saved)
    model = fabric.setup(torch.nn.Linear(4, 4))
    try:
        fabric.load(path, {"model": model})
    except Exception:
        return None
    loaded = model.weight[0, 0].item()
    if loaded == saved[0, 0].item():
        raise RuntimeError("the loaded model does not hold the flipped value")
    return f"fabric.load loaded weight[0, 0] = {loaded:.6f} (saved {saved[0, 0].item():.6f})"


def main() -> int:
    for name in ("lightning.fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.simplefilter("ignore")  # the Trainer's hints about workers and logging
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as directory:
        trainer_root, fabric_root = Path(directory, "trainer"), Path(directory, "fabric")
        fabric_root.mkdir()
        accepted = [r for r in (trainer_resume(trainer_root), fabric_load(fabric_root)) if r]
    if accepted:
        print(f"REPRODUCED: one bit flipped in the weight's bytes, no error: {'; '.join(accepted)}")
        return 0
    print("NOT REPRODUCED: Trainer.fit(ckpt_path=...) and fabric.load refused the damaged files")
    return 1


if __name__ == "__main__":
    sys.exit(main())
