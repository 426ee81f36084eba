"""Single-process unit tests: sampler, schedule, fingerprint, hashing writer, diff command-line behaviour."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from ckptspec.checkpointing.fingerprint import differences
from ckptspec.checkpointing.hashing_writer import CONCURRENT_HASH_BYTES, HashingFileSystem
from ckptspec.cli import main
from ckptspec.file_digest import ALGORITHMS, digest_bytes
from ckptspec.reference_impl.data import (
    ConsumptionLedger,
    GlobalBatchSampler,
    SyntheticTokens,
    shard_contiguous,
)


def test_sample_order_does_not_depend_on_world_size_and_resumes() -> None:
    sampler = GlobalBatchSampler(dataset_size=50, global_batch_size=12, seed=1)
    batches = [sampler.next_global_batch() for _ in range(9)]  # crosses an epoch (4 batches each)
    assert sampler.state_dict() == {
        "epoch": 2,
        "batches_in_epoch": 1,
        "samples_in_epoch": 12,
        "samples_seen": 108,
    }
    assert sorted(sum(batches[:4], [])) == sorted(
        set(sum(batches[:4], []))
    )  # no repeat within an epoch
    for world, acc in ((1, 3), (2, 2), (3, 1), (3, 2)):
        parts = [
            m
            for r in range(world)
            for m in GlobalBatchSampler.rank_micro_batches(batches[0], r, world, acc)
        ]
        assert sum(parts, []) == batches[0]
    resumed = GlobalBatchSampler(dataset_size=50, global_batch_size=12, seed=1)
    probe = GlobalBatchSampler(dataset_size=50, global_batch_size=12, seed=1)
    for _ in range(5):
        probe.next_global_batch()
    resumed.load_state_dict(probe.state_dict())
    assert [resumed.next_global_batch() for _ in range(4)] == batches[5:9]


def test_group_ledgers_partition_the_batches_and_resume() -> None:
    """Ledgers of a world's groups together count every sample once; a restored ledger continues
    exactly as the uninterrupted one; groups that consumed different ids have different digests."""
    sampler = GlobalBatchSampler(dataset_size=50, global_batch_size=12, seed=1)
    batches = [sampler.next_global_batch() for _ in range(6)]
    world, size = 6, 2
    ledgers = [ConsumptionLedger.for_rank(rank, size) for rank in range(0, world, size)]
    assert [ledger.ranks for ledger in ledgers] == [range(0, 2), range(2, 4), range(4, 6)]
    for batch in batches[:3]:
        for ledger in ledgers:
            ledger.record(batch, world)
    group1 = sum(
        (
            GlobalBatchSampler.rank_micro_batches(b, r, world, 1)[0]
            for b in batches[:3]
            for r in (2, 3)
        ),
        [],
    )
    assert (
        ledgers[1].samples == len(group1) == 12 and sum(ledger.samples for ledger in ledgers) == 36
    )
    assert len({ledger.ids_digest for ledger in ledgers}) == 3
    resumed = ConsumptionLedger.for_rank(2, size)
    resumed.load_state_dict(ledgers[1].state_dict())
    for batch in batches[3:]:
        resumed.record(batch, world)
        ledgers[1].record(batch, world)
    assert resumed == ledgers[1] and resumed.samples == 24
    resumed.restart(6)
    assert resumed.state_dict() == {
        "group": 1,
        "group_size": 2,
        "since_step": 6,
        "samples": 0,
        "ids_digest": "",
    }
    with pytest.raises(TypeError):
        resumed.load_state_dict({"group": 1})


def test_a_changed_group_size_at_the_same_world_size_is_a_layout_change() -> None:
    """RESUME-3 for grouped state: a per_node component saved with 2 ranks per node is refused
    by a run of one rank per node (same world size), or re-derived when elastic."""
    import torch

    from ckptspec.checkpointing.distributed import DistContext
    from ckptspec.checkpointing.loader import CheckpointLoader
    from ckptspec.errors import GroupLayoutMismatchError
    from ckptspec.manifest import Manifest

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


def test_dataset_is_a_function_of_its_seed() -> None:
    a, b, c = (
        SyntheticTokens(7, 20, 8, 16),
        SyntheticTokens(7, 20, 8, 16),
        SyntheticTokens(8, 20, 8, 16),
    )
    assert a.tokens.equal(b.tokens) and not a.tokens.equal(c.tokens)
    assert [len(shard_contiguous(5, r, 3)) for r in range(3)] == [2, 2, 1]
    assert [shard_contiguous(2, r, 3) for r in range(3)] == [[0], [1], []]


def test_learning_rate_warms_up_then_decays_by_cosine() -> None:
    from ckptspec.reference_impl.config import TrainConfig, lr_factor

    config = TrainConfig(output_dir="x", run_id="x", steps=10, warmup_steps=2, min_lr_ratio=0.1)
    factors = [lr_factor(config, s) for s in range(11)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert all(x > y for x, y in zip(factors[2:], factors[3:]))
    assert factors[10] == pytest.approx(0.1) and factors[6] == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2))
    )


def test_fingerprint_differences_name_every_key() -> None:
    saved = {"accumulation_steps": 2, "global_batch_size": 12, "model": {"dim": 32}}
    now = {"accumulation_steps": 1, "global_batch_size": 12, "model": {"dim": 64}, "extra": 1}
    assert differences(saved, now) == {
        "accumulation_steps": (2, 1),
        "extra": (None, 1),
        "model": ({"dim": 32}, {"dim": 64}),
    }


def test_diff_cannot_compare_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(tmp_path / "missing"), str(tmp_path)]) == 2
    (tmp_path / "a").mkdir()
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "cannot compare" in err and "Traceback" not in err


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_hashing_writer_records_the_digest_of_what_reached_the_file(
    tmp_path: Path, algorithm: str
) -> None:
    fs = HashingFileSystem(algorithm)
    chunks = [os.urandom(n) for n in (7, CONCURRENT_HASH_BYTES, 3 * CONCURRENT_HASH_BYTES + 5, 100)]
    sequential, seeked = tmp_path / "sequential.bin", tmp_path / "seeked.bin"
    with fs.create_stream(sequential, "wb") as stream:
        for chunk in chunks:
            assert stream.write(chunk) == len(chunk)
    with fs.create_stream(seeked, "wb") as stream:
        stream.write(chunks[1])
        stream.seek(0)
        stream.write(chunks[0])
    data = sequential.read_bytes()
    assert fs.digests[sequential] == (len(data), digest_bytes(data, algorithm))
    assert seeked not in fs.digests  # rewritten in place: the caller must hash it from disk
