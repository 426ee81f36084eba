"""Single-process tests of the reference trainer's data and schedule: global sample order, per-group
consumption ledgers, the synthetic dataset and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest

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
