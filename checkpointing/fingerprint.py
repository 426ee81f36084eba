"""The config fingerprint: settings that must not change across a resume (MANIFEST-9, RESUME-5)."""

from __future__ import annotations

from typing import Any

from ckptspec.digest import json_digest
from ckptspec.manifest import ConfigFingerprint


def fingerprint(values: dict[str, Any]) -> ConfigFingerprint:
    """The manifest's fingerprint of ``values`` (their canonical JSON digest attached)."""
    return ConfigFingerprint(values=values, sha256=json_digest(values))


def differences(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each key whose value differs between ``saved`` and ``current`` (missing keys are None)."""
    return {
        k: (saved.get(k), current.get(k))
        for k in sorted(saved.keys() | current.keys())
        if saved.get(k) != current.get(k)
    }
