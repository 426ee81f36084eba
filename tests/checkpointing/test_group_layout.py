"""The loader's world-size check of grouped state: a changed group size is a layout change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckptspec.checkpointing.distributed import DistContext
from ckptspec.checkpointing.loader import CheckpointLoader
from ckptspec.errors import GroupLayoutMismatchError
from ckptspec.manifest import Manifest


def test_a_changed_group_size_at_the_same_world_size_is_a_layout_change() -> None:
    """RESUME-3 for grouped state: a per_node component saved with 2 ranks per node is refused
    by a run of one rank per node (same world size), or re-derived when elastic."""
    example = (
        Path(__file__).resolve().parents[2]
        / "spec"
        / "examples"
        / "valid"
        / "manifest-per-node"
        / "manifest.json"
    )
    manifest = Manifest.model_validate_json(
        example.read_text()
    )  # world size 4, data_position per_node of 2
    ctx = DistContext(0, 4, 0, torch.device("cpu"), local_world_size=1)
    with pytest.raises(
        GroupLayoutMismatchError,
        match="data_position: group size 2 in the checkpoint, 1 in this run",
    ) as refused:
        CheckpointLoader(ctx, {}, group_sizes={"data_position": 1})._check_world_size(manifest)
    assert (
        refused.value.components == ["data_position"] and refused.value.code == "RESUME_WORLD_SIZE"
    )
    assert (
        CheckpointLoader(ctx, {}, group_sizes={"data_position": 2})._check_world_size(manifest)
        == ()
    )
    assert CheckpointLoader(
        ctx, {}, elastic=True, group_sizes={"data_position": 1}
    )._check_world_size(manifest) == ("data_position",)
