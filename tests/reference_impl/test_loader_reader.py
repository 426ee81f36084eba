"""The reference loader reads checkpoints through the validator's reader (one reader path).

Whatever ``ckptspec validate`` refuses, the loader refuses before loading anything, naming the
same finding code: a symbolic link to a directory outside the checkpoint (LAYOUT-6), a
manifest past the size or depth limits (MANIFEST-2), a corrupted payload (LAYOUT-5). Runs in a
one-rank gloo group inside the test process.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from ckptspec.errors import IntegrityError, WorldSizeMismatchError
from ckptspec.jsonload import MAX_DEPTH
from ckptspec.checkpointing.distributed import DistContext
from ckptspec.checkpointing.loader import CheckpointLoader
from ckptspec.validator import validate_path

pytestmark = pytest.mark.slow  # starts torch processes or process groups: not in `make test-fast`

EXAMPLE = Path(__file__).resolve().parents[2] / "spec" / "examples" / "valid" / "checkpoint-world2" / "step-000000100"


@pytest.fixture
def loader() -> Iterator[CheckpointLoader]:
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        values = json.loads((EXAMPLE / "manifest.json").read_text())["config"]["values"]
        yield CheckpointLoader(DistContext(0, 1, 0, torch.device("cpu")), values)
    finally:
        dist.destroy_process_group()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    target = tmp_path / "run" / EXAMPLE.name
    shutil.copytree(EXAMPLE, target)
    return target


def _refused_with(loader: CheckpointLoader, checkpoint: Path, code: str) -> None:
    validator_codes = {f.code for f in validate_path(checkpoint)}
    assert code in validator_codes, validator_codes
    with pytest.raises(IntegrityError) as refused:
        loader.plan(checkpoint)
    assert any(p.startswith(code) for p in refused.value.problems), refused.value.problems


def test_an_intact_checkpoint_passes_the_integrity_check(loader: CheckpointLoader, checkpoint: Path) -> None:
    with pytest.raises(WorldSizeMismatchError):  # saved at world size 2: every check before this one held
        loader.plan(checkpoint)


def test_symlinked_directory_leading_out_is_refused(loader: CheckpointLoader, checkpoint: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    shutil.move(str(checkpoint / "model"), outside)
    (checkpoint / "model").symlink_to(outside, target_is_directory=True)
    _refused_with(loader, checkpoint, "PATH_ESCAPES")


def test_deeply_nested_manifest_is_refused(loader: CheckpointLoader, checkpoint: Path) -> None:
    document = json.loads((checkpoint / "manifest.json").read_text())
    document["eval"] = {"x": json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))}
    (checkpoint / "manifest.json").write_text(json.dumps(document))
    _refused_with(loader, checkpoint, "JSON_TOO_DEEP")


def test_corrupted_payload_is_refused(loader: CheckpointLoader, checkpoint: Path) -> None:
    payload = checkpoint / "model" / "__0_0.distcp"
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF
    payload.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as refused:
        loader.plan(checkpoint)
    assert any(p.startswith("FILE_DIGEST_MISMATCH") for p in refused.value.problems), refused.value.problems
