"""Loading a committed checkpoint: every check first, then the state.

:meth:`CheckpointLoader.plan` reads the manifest and performs, in order, the integrity check,
the config-drift check and the world-size check. It modifies no live state and raises a typed
:class:`~ckptspec.errors.CheckpointError` on every rank alike. Only a returned
:class:`LoadPlan` is used to load state.

The integrity check is the validator's own reader (:func:`ckptspec.checkpoint_check.check_checkpoint`):
the manifest within the MANIFEST-2 limits, its schema and rules, every listed path confined to
the checkpoint (a symbolic link, even to a directory, that leads out of it is refused: LAYOUT-6),
regular, of the listed size; then SHA-256 of every file, split across ranks. Every problem is
a validator finding line (``CODE REQ-ID path: ...``) and the problems of all ranks are agreed
before anyone raises. Payloads are read without executing code: DCP through
:func:`ckptspec.safe_dcp.safe_reader` / :func:`~ckptspec.safe_dcp.safe_planner`, per-rank files
with ``torch.load(weights_only=True)``, the rest as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from ckptspec.checkpoint_check import check_checkpoint
from ckptspec.confined import resolve, scan_tree, sha256_file
from ckptspec.errors import ConfigDriftError, IntegrityError, NoCheckpointError, WorldSizeMismatchError
from ckptspec.findings import Severity, finding
from ckptspec.layout import LAYOUT
from ckptspec.manifest import RANK_LOCAL_PATTERNS, Component, Manifest
from ckptspec.checkpointing.commit import per_rank_file
from ckptspec.checkpointing.distributed import DistContext
from ckptspec.checkpointing.fingerprint import differences
from ckptspec.safe_dcp import safe_planner, safe_reader


@dataclass(frozen=True)
class LoadPlan:
    """A checkpoint that passed every pre-load check, and which rank-local components this
    rank must re-derive instead of loading (non-empty only for an elastic resume)."""

    path: Path
    manifest: Manifest
    rederived: tuple[str, ...] = ()

    def component(self, name: str) -> Component:
        for component in self.manifest.components:
            if component.name == name:
                return component
        raise KeyError(f"checkpoint {self.path} has no component {name!r}")


class CheckpointLoader:
    """Checks and loads checkpoints for one rank of the current run.

    ``verify``: ``"full"`` (default) checks size and SHA-256 of every listed file, ``"size"``
    only sizes. ``elastic``: re-derive rank-local components on a world-size change instead of
    failing.
    """

    def __init__(self, ctx: DistContext, fingerprint_values: dict[str, Any], *, elastic: bool = False, verify: str = "full") -> None:
        if verify not in ("full", "size"):
            raise ValueError(f"verify must be 'full' or 'size', got {verify!r}")
        self.ctx = ctx
        self.fingerprint_values = fingerprint_values
        self.elastic = elastic
        self.verify = verify

    def plan(self, path: Path) -> LoadPlan:
        """*Collective.* Run every pre-load check on the checkpoint at ``path``."""
        manifest = self._checked_manifest(path)
        self._check_config(manifest)
        return LoadPlan(path, manifest, self._check_world_size(manifest))

    def plan_weights(self, path: Path) -> LoadPlan:
        """*Collective.* The checks for loading the model component alone, at any world size:
        integrity of the checkpoint (digests of the model's files) and an unchanged model architecture."""
        manifest = self._checked_manifest(path, components=("model",))
        drift = differences({"model": manifest.config.values.get("model")}, {"model": self.fingerprint_values["model"]})
        if drift:
            raise ConfigDriftError(drift)
        return LoadPlan(path, manifest)

    def _checked_manifest(self, path: Path, components: Optional[Sequence[str]] = None) -> Manifest:
        """*Collective.* The manifest of ``path`` once the checkpoint passed the validator's checks
        and every file (of ``components``, default all) its digest; raises the same
        :class:`IntegrityError` on every rank otherwise."""
        if not (path / LAYOUT.manifest_file).is_file():
            raise NoCheckpointError(f"{path} is not a committed checkpoint (no {LAYOUT.manifest_file})")
        manifest, findings = check_checkpoint(str(path), deep=False)
        problems = [f.line() for f in findings if f.severity == Severity.ERROR]
        if manifest is not None and not problems and self.verify == "full":
            problems = self._digest_problems(path, manifest, components)
        gathered: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(gathered, problems)
        everything = sorted({p for rank_problems in gathered for p in rank_problems})
        if everything or manifest is None:
            raise IntegrityError(everything or [f"{path}: the manifest could not be read"])
        return manifest

    def _digest_problems(self, path: Path, manifest: Manifest, components: Optional[Sequence[str]]) -> list[str]:
        """FILE_DIGEST_MISMATCH lines for this rank's share of the listed files (every
        ``world_size``-th, by path), read through the validator's confined resolution."""
        listed = sorted((f for c in manifest.components if components is None or c.name in components for f in c.files),
                        key=lambda f: f.path)
        root = str(path)
        real_root, tree = os.path.realpath(root), scan_tree(root)
        problems = []
        for entry in listed[self.ctx.rank :: self.ctx.world_size]:
            file = os.path.join(root, entry.path)
            resolved = resolve(root, real_root, tree, entry.path)
            try:
                digest = sha256_file(resolved.real_path, entry.size) if resolved.real_path is not None else None
            except OSError as exc:
                problems.append(finding("FILE_MISSING", file, f"cannot be read: {exc.strerror}").line())
                continue
            if digest != entry.sha256:
                problems.append(finding("FILE_DIGEST_MISMATCH", file, f"has SHA-256 {digest}, the manifest says {entry.sha256}").line())
        return problems

    def _check_config(self, manifest: Manifest) -> None:
        """Fail naming every fingerprinted setting that differs (RESUME-5)."""
        drift = differences(manifest.config.values, self.fingerprint_values)
        if drift:
            raise ConfigDriftError(drift)

    def _check_world_size(self, manifest: Manifest) -> tuple[str, ...]:
        """At another world size, rank-local components fail the load (RESUME-3) or, elastic,
        are returned for re-derivation."""
        saved = manifest.topology.world_size
        if saved == self.ctx.world_size:
            return ()
        rank_local = tuple(sorted(c.name for c in manifest.components if c.sharing in RANK_LOCAL_PATTERNS))
        if rank_local and not self.elastic:
            raise WorldSizeMismatchError(saved, self.ctx.world_size, rank_local)
        return rank_local

    # ------------------------------------------------------------------ payloads
    def load_sharded(self, plan: LoadPlan, name: str, state_dict: dict[str, Any]) -> None:
        """*Collective.* Load the DCP component ``name`` into ``state_dict`` in place (any world size)."""
        plan.component(name)
        directory = plan.path / name
        dcp.load(state_dict, storage_reader=safe_reader(directory), planner=safe_planner())

    def load_json(self, plan: LoadPlan, name: str) -> Any:
        """The value of the JSON component ``name``."""
        (entry,) = plan.component(name).files
        return json.loads((plan.path / entry.path).read_bytes())

    def load_per_rank(self, plan: LoadPlan, name: str) -> dict[str, torch.Tensor]:
        """This rank's file of the per-rank component ``name``."""
        if name in plan.rederived:
            raise ValueError(f"component {name!r} is re-derived in this resume, not loaded")
        return torch.load(plan.path / self._per_rank_path(plan, name), weights_only=True, map_location="cpu")

    def _per_rank_path(self, plan: LoadPlan, name: str) -> str:
        return per_rank_file(name, self.ctx.rank)
