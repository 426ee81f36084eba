"""The reference loader reads checkpoints through the validator's reader (one reader path).

Whatever ``ckptspec validate`` refuses, the loader refuses before loading anything, naming the
same finding code: a symbolic link to a directory outside the checkpoint (LAYOUT-6), a
manifest past the size or depth limits (MANIFEST-2), a corrupted JSON payload (LAYOUT-5). A
corrupted DCP file is refused as it is read (RESUME-6): ``read_sharded`` copies nothing into the
state dict before ``apply()``. Runs in a one-rank gloo group inside the test process.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from ckptspec.checkpointing.distributed import DistContext
from ckptspec.checkpointing.loader import CheckpointLoader, LoadPlan
from ckptspec.errors import IntegrityError, WorldSizeMismatchError
from ckptspec.file_digest import digest_file
from ckptspec.jsonload import MAX_DEPTH
from ckptspec.manifest import Manifest
from ckptspec.validator import validate_path

pytestmark = pytest.mark.slow  # starts torch processes or process groups: not in `make test-fast`

EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "spec"
    / "examples"
    / "valid"
    / "checkpoint-world2"
    / "step-000000100"
)


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


def test_an_intact_checkpoint_passes_the_integrity_check(
    loader: CheckpointLoader, checkpoint: Path
) -> None:
    with pytest.raises(
        WorldSizeMismatchError
    ):  # saved at world size 2: every check before this one held
        loader.plan(checkpoint)


def test_symlinked_directory_leading_out_is_refused(
    loader: CheckpointLoader, checkpoint: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    shutil.move(str(checkpoint / "model"), outside)
    (checkpoint / "model").symlink_to(outside, target_is_directory=True)
    _refused_with(loader, checkpoint, "PATH_ESCAPES")


def test_deeply_nested_manifest_is_refused(loader: CheckpointLoader, checkpoint: Path) -> None:
    document = json.loads((checkpoint / "manifest.json").read_text())
    document["eval"] = {"x": json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))}
    (checkpoint / "manifest.json").write_text(json.dumps(document))
    _refused_with(loader, checkpoint, "JSON_TOO_DEEP")


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_json_payload_is_refused_by_the_plan(
    loader: CheckpointLoader, checkpoint: Path
) -> None:
    _flip_a_byte(checkpoint / "scheduler.json")
    with pytest.raises(IntegrityError) as refused:
        loader.plan(checkpoint)
    assert any(p.startswith("FILE_DIGEST_MISMATCH") for p in refused.value.problems), (
        refused.value.problems
    )


@pytest.fixture
def dcp_plan(tmp_path: Path, loader: CheckpointLoader) -> tuple[LoadPlan, dict[str, torch.Tensor]]:
    """A checkpoint whose `model` component is a real DCP directory saved here, and its state."""
    state = {"w": torch.arange(4096, dtype=torch.float32), "b": torch.full((3,), 7.0)}
    root = tmp_path / "saved"
    dcp.save(state, checkpoint_id=root / "model")
    files = [
        {
            "path": f"model/{p.name}",
            "size": p.stat().st_size,
            "digest": digest_file(str(p), "xxh3-128"),
            "ranks": [0],
        }
        for p in sorted((root / "model").iterdir())
    ]
    document = json.loads((EXAMPLE / "manifest.json").read_text())
    document["components"] = [
        {
            "name": "model",
            "kind": "model",
            "sharing": "sharded",
            "format": "dcp",
            "reshardable": True,
            "files": files,
        }
    ]
    return LoadPlan(root, Manifest.model_validate(document)), state


def test_read_sharded_changes_nothing_until_applied(
    loader: CheckpointLoader, dcp_plan: tuple[LoadPlan, dict[str, torch.Tensor]]
) -> None:
    plan, saved = dcp_plan
    live = {"w": torch.zeros(4096), "b": torch.zeros(3)}
    staged = loader.read_sharded(plan, "model", live)
    assert not any(t.any() for t in live.values())  # nothing is copied before apply()
    staged.apply()
    assert all(torch.equal(live[k], saved[k]) for k in saved)


@pytest.mark.parametrize("damaged", ["__0_0.distcp", ".metadata"])
def test_corrupted_dcp_file_is_refused_as_it_is_read(
    loader: CheckpointLoader, dcp_plan: tuple[LoadPlan, dict[str, torch.Tensor]], damaged: str
) -> None:
    plan, _ = dcp_plan
    _flip_a_byte(plan.path / "model" / damaged)
    live = {"w": torch.zeros(4096), "b": torch.zeros(3)}
    with pytest.raises(IntegrityError) as refused:
        loader.read_sharded(plan, "model", live)
    assert [p.split()[0] for p in refused.value.problems] == ["FILE_DIGEST_MISMATCH"], (
        refused.value.problems
    )
    assert damaged in refused.value.problems[0]
    assert not any(t.any() for t in live.values())
