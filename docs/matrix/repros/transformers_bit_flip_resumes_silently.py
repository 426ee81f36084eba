"""Reproduces: RESUME-6 (transformers 5.23.0).

``Trainer.train(resume_from_checkpoint=...)`` loads ``model.safetensors`` with
``safetensors.torch.load_file`` and ``rng_state.pth`` with ``torch.load``; the checkpoint holds
no digest of its files and neither loader checks one (``torch.load`` does not verify the zip
CRC), so a corrupted checkpoint resumes as if it were intact.

The script trains 2 steps and saves ``checkpoint-2``, copies it, and flips one bit in the
copy's ``model.safetensors`` (the first tensor's bytes) and one in its ``rng_state.pth`` (the
CPU generator state). It resumes both copies to step 3, recording the weights when training
begins and the CPU RNG state at the step's end. Exit 0 and ``REPRODUCED`` when the corrupted copy
resumes without an error while both records differ from the intact copy's; exit 1 and
``NOT REPRODUCED`` when the resume refuses the corrupted copy.
"""

import json
import os
import shutil
import struct
import sys
import tempfile
import zipfile
from typing import Any

import torch
import torch.nn.functional as F
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback
from transformers.utils import logging


class TinyConfig(PretrainedConfig):
    model_type = "tiny-linear"


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.linear = torch.nn.Linear(4, 1)
        self.post_init()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = self.linear(x)
        return {"loss": F.mse_loss(prediction, labels), "logits": prediction}


class Recorder(TrainerCallback):
    """Keeps the weights at train begin and the CPU RNG state at the last step's end."""

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}
        self.rng = torch.empty(0)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.weights = {k: v.clone() for k, v in kwargs["model"].state_dict().items()}

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.rng = torch.get_rng_state()


def train(output_dir: str, max_steps: int, resume: str | None = None) -> Recorder:
    generator = torch.Generator().manual_seed(0)
    samples = [
        {
            "x": torch.randn(4, generator=generator),
            "labels": torch.randn(1, generator=generator),
        }
        for _ in range(16)
    ]
    args = TrainingArguments(
        output_dir=output_dir,
        max_steps=max_steps,
        save_steps=2,
        per_device_train_batch_size=4,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
    )
    recorder = Recorder()
    trainer = Trainer(
        model=TinyModel(TinyConfig()),
        args=args,
        train_dataset=samples,
        callbacks=[recorder],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train(resume_from_checkpoint=resume)
    return recorder


def flip_bit(path: str, offset: int) -> None:
    with open(path, "r+b") as file:
        file.seek(offset)
        byte = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([byte ^ 0x01]))


def safetensors_data_offset(path: str) -> int:
    """The file offset of the first tensor's bytes (after the 8-byte length and JSON header)."""
    with open(path, "rb") as file:
        (header_size,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(header_size))
    begin = min(v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
    return 8 + header_size + begin


def zip_record_offset(path: str, suffix: str) -> int:
    """The file offset of the (stored, uncompressed) zip record whose name ends with suffix."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    with open(path, "rb") as file:
        file.seek(info.header_offset + 26)
        name_size, extra_size = struct.unpack("<HH", file.read(4))
    return info.header_offset + 30 + name_size + extra_size


def main() -> int:
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as directory:
        run = os.path.join(directory, "run")
        train(run, max_steps=2)
        intact = os.path.join(run, "checkpoint-2")
        corrupted = os.path.join(directory, "corrupted")
        shutil.copytree(intact, corrupted)
        weights = os.path.join(corrupted, "model.safetensors")
        flip_bit(weights, safetensors_data_offset(weights))
        rng_file = os.path.join(corrupted, "rng_state.pth")
        # data/0, the only tensor in rng_state.pth, is the CPU generator state: byte 104 is the low
        # byte of a Mersenne Twister word (its high 4 bytes are dropped on load)
        flip_bit(rng_file, zip_record_offset(rng_file, "/data/0") + 104)

        reference = train(os.path.join(directory, "a"), max_steps=3, resume=intact)
        try:
            resumed = train(os.path.join(directory, "b"), max_steps=3, resume=corrupted)
        except Exception as error:  # a refusal of the corrupted checkpoint
            print(f"NOT REPRODUCED: the corrupted checkpoint was refused: {error!r}")
            return 1
    changed = sorted(
        k for k, v in resumed.weights.items() if not torch.equal(v, reference.weights[k])
    )
    rng_differs = not torch.equal(resumed.rng, reference.rng)
    if changed and rng_differs:
        print(
            "REPRODUCED: the checkpoint with one bit flipped in model.safetensors and one in "
            f"rng_state.pth resumed to step 3 without an error; it loaded other values of "
            f"{changed} and another CPU RNG state than the intact checkpoint"
        )
        return 0
    print(
        f"NOT REPRODUCED: the corrupted checkpoint resumed, but changed weights {changed}, "
        f"RNG differs: {rng_differs}"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
