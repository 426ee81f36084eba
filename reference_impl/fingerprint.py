"""The config fingerprint: settings that must not change across a resume (MANIFEST-9, RESUME-5)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ckptspec.digest import json_digest
from ckptspec.manifest import ConfigFingerprint


def fingerprint(values: dict[str, Any]) -> ConfigFingerprint:
    """The manifest's fingerprint of ``values`` (their canonical JSON digest attached)."""
    return ConfigFingerprint(values=values, sha256=json_digest(values))


def fingerprint_values(config: Any, model_args: Any, dataset_identity: dict[str, Any]) -> dict[str, Any]:
    """The fingerprinted settings of a :class:`~ckptspec.reference_impl.trainer.TrainConfig`.

    The learning-rate schedule is fingerprinted too: resuming with another schedule would not
    continue the same run.
    """
    return {
        "accumulation_steps": config.accumulation_steps,
        "global_batch_size": config.global_batch_size,
        "dataset": dataset_identity,
        "model": asdict(model_args),
        "schedule": {
            "lr": config.lr,
            "warmup_steps": config.warmup_steps,
            "decay_steps": config.decay_steps or config.steps,
            "min_lr_ratio": config.min_lr_ratio,
            "weight_decay": config.weight_decay,
            "grad_clip": config.grad_clip,
        },
    }


def differences(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each key whose value differs between ``saved`` and ``current`` (missing keys are None)."""
    return {k: (saved.get(k), current.get(k)) for k in sorted(saved.keys() | current.keys()) if saved.get(k) != current.get(k)}
