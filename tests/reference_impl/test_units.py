"""Single-process unit tests: sampler, schedule, fingerprint, hashing writer, diff command-line behaviour."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import pytest

from ckptspec.cli import main
from ckptspec.reference_impl.data import GlobalBatchSampler, SyntheticTokens, shard_contiguous
from ckptspec.checkpointing.fingerprint import differences
from ckptspec.checkpointing.hashing_writer import CONCURRENT_HASH_BYTES, HashingFileSystem


def test_sample_order_does_not_depend_on_world_size_and_resumes() -> None:
    sampler = GlobalBatchSampler(dataset_size=50, global_batch_size=12, seed=1)
    batches = [sampler.next_global_batch() for _ in range(9)]  # crosses an epoch (4 batches each)
    assert sampler.state_dict() == {"epoch": 2, "batches_in_epoch": 1, "samples_in_epoch": 12, "samples_seen": 108}
    assert sorted(sum(batches[:4], [])) == sorted(set(sum(batches[:4], [])))  # no repeat within an epoch
    for world, acc in ((1, 3), (2, 2), (3, 1), (3, 2)):
        parts = [m for r in range(world) for m in GlobalBatchSampler.rank_micro_batches(batches[0], r, world, acc)]
        assert sum(parts, []) == batches[0]
    resumed = GlobalBatchSampler(dataset_size=50, global_batch_size=12, seed=1)
    probe = GlobalBatchSampler(dataset_size=50, global_batch_size=12, seed=1)
    for _ in range(5):
        probe.next_global_batch()
    resumed.load_state_dict(probe.state_dict())
    assert [resumed.next_global_batch() for _ in range(4)] == batches[5:9]


def test_dataset_is_a_function_of_its_seed() -> None:
    a, b, c = SyntheticTokens(7, 20, 8, 16), SyntheticTokens(7, 20, 8, 16), SyntheticTokens(8, 20, 8, 16)
    assert a.tokens.equal(b.tokens) and not a.tokens.equal(c.tokens)
    assert [len(shard_contiguous(5, r, 3)) for r in range(3)] == [2, 2, 1]
    assert [shard_contiguous(2, r, 3) for r in range(3)] == [[0], [1], []]


def test_learning_rate_warms_up_then_decays_by_cosine() -> None:
    from ckptspec.reference_impl.config import TrainConfig, lr_factor

    config = TrainConfig(output_dir="x", run_id="x", steps=10, warmup_steps=2, min_lr_ratio=0.1)
    factors = [lr_factor(config, s) for s in range(11)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert all(x > y for x, y in zip(factors[2:], factors[3:]))
    assert factors[10] == pytest.approx(0.1) and factors[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))


def test_fingerprint_differences_name_every_key() -> None:
    saved = {"accumulation_steps": 2, "global_batch_size": 12, "model": {"dim": 32}}
    now = {"accumulation_steps": 1, "global_batch_size": 12, "model": {"dim": 64}, "extra": 1}
    assert differences(saved, now) == {"accumulation_steps": (2, 1), "extra": (None, 1), "model": ({"dim": 32}, {"dim": 64})}


def test_diff_cannot_compare_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(tmp_path / "missing"), str(tmp_path)]) == 2
    (tmp_path / "a").mkdir()
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "cannot compare" in err and "Traceback" not in err


def test_hashing_writer_records_the_digest_of_what_reached_the_file(tmp_path: Path) -> None:
    fs = HashingFileSystem()
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
    assert fs.digests[sequential] == (len(data), hashlib.sha256(data).hexdigest())
    assert seeked not in fs.digests  # rewritten in place: the caller must hash it from disk

