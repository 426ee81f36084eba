"""Process-group, device and determinism set-up for trainers using the checkpoint library (the
reference trainer, the worked DDP example): where a rank runs (:class:`DistContext`), its device,
and the deterministic settings bit-exact resume depends on."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process runs within the default process group. ``local_world_size`` ranks run
    on this rank's node; a launcher such as torchrun gives the ranks of a node consecutive global
    ranks, so the node's index is ``rank // local_world_size``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    local_world_size: int = 1


def select_device(preference: str, local_rank: int) -> torch.device:
    """``cpu``, ``cuda:<local_rank>``, or (``auto``) CUDA when available."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        return device
    if preference != "cpu":
        raise ValueError(f"unknown device {preference!r}: use auto, cpu or cuda")
    return torch.device("cpu")


def configure_determinism(device: torch.device) -> None:
    """Make every kernel deterministic; on CUDA also cuBLAS workspaces, cuDNN and TF32."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(True)


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the default process group (from torchrun's environment) or create a one-process one.

    With no ``RANK`` in the environment, a world of one over an in-memory store is created, so
    the trainer runs unchanged without a launcher. An existing default group is reused.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_preference, local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if "RANK" in os.environ:
            dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return DistContext(
        dist.get_rank(),
        dist.get_world_size(),
        local_rank,
        device,
        int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )


def exit_process(status: int) -> NoReturn:
    """Destroy the process group if it exists, flush stdio and end the process with ``status``.

    Interpreter and C++ static teardown are skipped: gloo's worker threads have been seen to
    abort a process there (SIGABRT, "terminate called without an active exception") after a
    clean run, which a launcher reports as a failure.
    """
    if dist.is_initialized():
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
