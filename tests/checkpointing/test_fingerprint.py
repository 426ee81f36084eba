"""The run fingerprint's comparison: every differing key is named with both values."""

from __future__ import annotations

from ckptspec.checkpointing.fingerprint import differences


def test_fingerprint_differences_name_every_key() -> None:
    saved = {"accumulation_steps": 2, "global_batch_size": 12, "model": {"dim": 32}}
    now = {"accumulation_steps": 1, "global_batch_size": 12, "model": {"dim": 64}, "extra": 1}
    assert differences(saved, now) == {
        "accumulation_steps": (2, 1),
        "extra": (None, 1),
        "model": ({"dim": 32}, {"dim": 64}),
    }
