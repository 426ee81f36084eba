"""Reproduces: RESUME-6 (accelerate 1.15.0).

``Accelerator.save_state()`` stores the model in ``model.safetensors`` (and the other states in
pickles) with no checksum, and ``load_state()`` reads the tensors back as they are on disk.

The script saves a checkpoint, flips one bit inside the weight tensor's bytes of
``model.safetensors`` (its header stays valid), and calls ``load_state()``. Exit 0 and
``REPRODUCED`` when it returns normally with the damaged value in the model; exit 1 and
``NOT REPRODUCED`` when the load refuses the damaged file.
"""

import json
import os
import struct
import sys
import tempfile

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration


def flip_bit_in_tensor(path: str, name: str) -> None:
    """Flips the top exponent bit of the first float32 element of tensor ``name``."""
    with open(path, "r+b") as file:
        (header_size,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(header_size))
        start = 8 + header_size + header[name]["data_offsets"][0]
        file.seek(start + 3)  # little-endian: byte 3 holds the sign and top exponent bits
        byte = file.read(1)[0]
        file.seek(start + 3)
        file.write(bytes([byte ^ 0x40]))


def main() -> int:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as directory:
        accelerator = Accelerator(
            cpu=True,
            project_config=ProjectConfiguration(
                project_dir=directory, automatic_checkpoint_naming=True
            ),
        )
        model = torch.nn.Linear(4, 1)
        model, optimizer = accelerator.prepare(
            model, torch.optim.AdamW(model.parameters(), lr=0.01)
        )
        accelerator.backward(model(torch.ones(2, 4)).square().mean())
        optimizer.step()
        saved = model.weight.detach().clone()
        checkpoint = accelerator.save_state()
        flip_bit_in_tensor(os.path.join(checkpoint, "model.safetensors"), "weight")

        with torch.no_grad():
            model.weight.zero_()
        try:
            accelerator.load_state()
        except Exception as error:  # a refused load is what the invariant asks for
            print(f"NOT REPRODUCED: load_state() raised {type(error).__name__}: {error}")
            return 1
        loaded = model.weight.detach()
    if torch.equal(loaded, saved):
        raise RuntimeError("the flipped bit did not reach the loaded weight")
    print(
        "REPRODUCED: load_state() returned normally from a model.safetensors with one bit "
        f"flipped; weight[0, 0] is now {loaded[0, 0].item():.6g} (saved "
        f"{saved[0, 0].item():.6g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
