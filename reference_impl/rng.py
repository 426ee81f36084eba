"""Per-rank RNG state: the CPU generator and the *current* accelerator device only.

A checkpoint therefore never depends on how many devices a node has (RESUME-8).
"""

from __future__ import annotations

import hashlib

import torch


def capture(device: torch.device) -> dict[str, torch.Tensor]:
    """This rank's RNG state as tensors: ``cpu`` and, on CUDA, ``cuda`` (the current device)."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`capture` returned; the device entry must match this rank's device type."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def derived_seed(seed: int, step: int, rank: int) -> int:
    """A 62-bit seed that is a pure function of (seed, step, rank)."""
    digest = hashlib.sha256(f"ckptspec-rng:{seed}:{step}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2


def rederive(seed: int, step: int, rank: int, device: torch.device) -> None:
    """Seed this rank's generators deterministically from (seed, step, rank).

    Used at the start of a run (step 0) and for an elastic resume at another world size.
    """
    value = derived_seed(seed, step, rank)
    torch.default_generator.manual_seed(value)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(value)
