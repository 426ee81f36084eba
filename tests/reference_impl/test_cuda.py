"""The CUDA/NCCL path: bit-exact resume with deterministic CUDA settings; RNG of the current device only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from refimpl_launch import assert_identical, assert_valid, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_cuda_resume_is_bit_exact_and_saves_current_device_rng(tmp_path: Path) -> None:
    nproc = min(2, torch.cuda.device_count())
    args = ["--steps", "4", "--save-every", "2", "--accumulation-steps", "2", "--device", "cuda"]
    train(nproc, tmp_path, "full", *args)
    train(nproc, tmp_path, "cut", *args, "--crash-at-step", "3", expect=None)
    train(nproc, tmp_path, "cut", *args)
    assert_identical(tmp_path / "full" / "step-000000004", tmp_path / "cut" / "step-000000004")
    assert_valid(tmp_path / "full", tmp_path / "cut")
    state = torch.load(
        tmp_path / "cut" / "step-000000004" / "rng" / "rank-00000.pt", weights_only=True
    )
    assert sorted(state) == ["cpu", "cuda"] and state["cuda"].dtype == torch.uint8
