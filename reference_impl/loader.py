"""Loading a committed checkpoint: every check first, then the state.

:meth:`CheckpointLoader.plan` reads the manifest and performs, in order, the integrity check
(size and SHA-256 of every listed file, split across ranks and agreed), the config-drift check
and the world-size check. It modifies no live state and raises a typed
:class:`~ckptspec.errors.CheckpointError` on every rank alike. Only a returned
:class:`LoadPlan` is used to load state. Payloads are read without executing code: DCP through
:func:`ckptspec.safe_dcp.safe_reader` / :func:`~ckptspec.safe_dcp.safe_planner`, per-rank files
with ``torch.load(weights_only=True)``, the rest as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from ckptspec.errors import ConfigDriftError, IntegrityError, NoCheckpointError, WorldSizeMismatchError
from ckptspec.layout import LAYOUT
from ckptspec.manifest import RANK_LOCAL_PATTERNS, Component, Manifest
from ckptspec.reference_impl.checkpoint import per_rank_file
from ckptspec.reference_impl.distributed import DistContext
from ckptspec.reference_impl.fingerprint import differences
from ckptspec.reference_impl.fsutil import file_digest
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
        manifest = self._read_manifest(path)
        self._verify_integrity(path, manifest)
        self._check_config(manifest)
        return LoadPlan(path, manifest, self._check_world_size(manifest))

    def plan_weights(self, path: Path) -> LoadPlan:
        """*Collective.* The checks for loading the model component alone, at any world size:
        integrity of its files and an unchanged model architecture."""
        manifest = self._read_manifest(path)
        self._verify_integrity(path, manifest, components=("model",))
        drift = differences({"model": manifest.config.values.get("model")}, {"model": self.fingerprint_values["model"]})
        if drift:
            raise ConfigDriftError(drift)
        return LoadPlan(path, manifest)

    def _read_manifest(self, path: Path) -> Manifest:
        marker = path / LAYOUT.manifest_file
        if not marker.is_file():
            raise NoCheckpointError(f"{path} is not a committed checkpoint (no {LAYOUT.manifest_file})")
        try:
            return Manifest.model_validate_json(marker.read_bytes())
        except ValueError as exc:
            raise IntegrityError([f"{marker}: not a valid manifest ({exc.__class__.__name__})"]) from None

    def _verify_integrity(self, path: Path, manifest: Manifest, components: Optional[Sequence[str]] = None) -> None:
        """Every listed file (of ``components``, default all) exists with its size and SHA-256;
        files are split across ranks and the problems all-gathered, so every rank raises the
        same :class:`IntegrityError`."""
        chosen = [c for c in manifest.components if components is None or c.name in components]
        listed = sorted((f for c in chosen for f in c.files), key=lambda f: f.path)
        problems = []
        for entry in listed[self.ctx.rank :: self.ctx.world_size]:
            file = path / entry.path
            if file.is_symlink() or not file.is_file():
                problems.append(f"{entry.path}: missing")
                continue
            size = file.stat().st_size
            if size != entry.size:
                problems.append(f"{entry.path}: size {size}, manifest says {entry.size}")
            elif self.verify == "full" and file_digest(file)[1] != entry.sha256:
                problems.append(f"{entry.path}: SHA-256 does not match the manifest")
        gathered: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(gathered, problems)
        everything = sorted(p for rank_problems in gathered for p in rank_problems)
        if everything:
            raise IntegrityError(everything)

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
