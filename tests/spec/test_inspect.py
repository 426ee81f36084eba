"""`ckptspec inspect`: summaries of ckptspec checkpoints and runs, and of directories without a
manifest (plain DCP, Hugging Face style), which are labelled as such and never unpickled."""

from __future__ import annotations

import json
import math
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from spec_cases import EXAMPLES, needs_torch

from ckptspec.cli import main
from ckptspec.foreign import read_safetensors_header


def inspect(capsys, *args: str) -> tuple[int, str]:
    status = main(["inspect", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out + err


def test_checkpoint_summary(capsys) -> None:
    status, out = inspect(
        capsys, EXAMPLES / "valid" / "checkpoint-world2" / "step-000000100", "--files"
    )
    assert status == 0
    for expected in (
        "world_size 2",
        "dp_shard=2",
        "global_step 100",
        "loss=2.5",
        "per_rank",
        "sharded",
        "rng/rank-00001.pt",
        "agree on 2 ranks",
    ):
        assert expected in out


def test_run_summary(capsys) -> None:
    status, out = inspect(capsys, EXAMPLES / "valid" / "run-complete" / "demo-run")
    assert status == 0
    assert (
        "3 committed checkpoint(s): 100, 200, 300" in out
        and "step 100, score 1.5" in out
        and "keep_last 2" in out
        and "staging" in out
    )


def test_invalid_manifest_and_missing_path(capsys) -> None:
    assert (
        inspect(capsys, EXAMPLES / "invalid" / "manifest" / "json-syntax" / "manifest.json")[0] == 1
    )
    assert inspect(capsys, "/nonexistent/ckptspec")[0] == 2


class _Trap:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(self.marker), "w"))


def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape) in tensors.items():
        nbytes = 4 * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)


def test_hugging_face_directory(tmp_path: Path, capsys) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    _safetensors(
        hf / "model.safetensors",
        {"lm_head.weight": ("F32", [8, 4]), "embed.weight": ("BF16", [8, 4])},
    )
    marker = tmp_path / "pwned"
    (hf / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(marker)))
    (hf / "training_state.pt").write_bytes(pickle.dumps(_Trap(marker)))
    (hf / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    status, out = inspect(capsys, hf)
    assert status == 0 and not marker.exists()
    assert "NOT a ckptspec checkpoint" in out and "Hugging Face" in out
    assert "lm_head.weight" in out and "8x4" in out and "BF16" in out
    assert (
        "pytorch_model.bin: pickle" in out and "training_state.pt: pickle" in out and "llama" in out
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x00",
        struct.pack("<Q", 2**40) + b"{}",
        struct.pack("<Q", 10) + b"{}",
        struct.pack("<Q", 2) + b"[]",
    ],
)
def test_malformed_safetensors_header_is_a_value_error(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "x.safetensors").write_bytes(data)
    with pytest.raises(ValueError):
        read_safetensors_header(str(tmp_path / "x.safetensors"))


def test_unrecognised_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    status, out = inspect(capsys, tmp_path)
    assert status == 1 and "NOT a ckptspec checkpoint" in out and "Traceback" not in out


@needs_torch
def test_plain_dcp_directory(tmp_path: Path) -> None:
    # one separate process saves with DCP and inspects: both need torch, which this session avoids
    code = (
        "import sys, torch, torch.distributed.checkpoint as dcp; from ckptspec.cli import main; "
        f"dcp.save({{'w': torch.zeros(3, 5), 'b': torch.ones(7, dtype=torch.bfloat16), 'step': 4}}, checkpoint_id={str(tmp_path / 'dcp')!r}); "
        f"sys.exit(main(['inspect', {str(tmp_path / 'dcp')!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert (
        "NOT a ckptspec checkpoint" in result.stdout
        and "torch.distributed.checkpoint" in result.stdout
    )
    assert (
        "w  " in result.stdout
        and "float32" in result.stdout
        and "3x5" in result.stdout
        and "bfloat16" in result.stdout
    )
    assert "step: non-tensor value" in result.stdout
