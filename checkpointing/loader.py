"""Loading a committed checkpoint: every check first, then the state.

:meth:`CheckpointLoader.plan` reads the manifest and performs, in order, the integrity check,
the config-drift check and the world-size check. It modifies no live state and raises a typed
:class:`~ckptspec.errors.CheckpointError` on every rank alike. Only a returned
:class:`LoadPlan` is used to load state.

The integrity check is the validator's own reader (:func:`ckptspec.checkpoint_check.check_checkpoint`):
the manifest within the MANIFEST-2 limits, its schema and rules, every listed path confined to
the checkpoint (a symbolic link, even to a directory, that leads out of it is refused: LAYOUT-6),
regular, of the listed size; then the digest of every file of the small components (JSON,
per-rank files), split across ranks. Every problem is a validator finding line
(``CODE REQ-ID path: ...``) and the problems of all ranks are agreed before anyone raises.

DCP components are verified as they are read, so their bytes are read once: :meth:`read_sharded`
reads through a reader that checks each file's size and digest before any of its bytes are used
and defers every copy into the destination until ``apply()``; a read returns only when every
rank's files matched. A resume reads every sharded component first and applies them only then,
so live state changes only once all of them were intact (RESUME-6).
Payloads are read without executing code: DCP through :func:`ckptspec.safe_dcp.safe_reader` /
:func:`~ckptspec.safe_dcp.safe_planner`, per-rank files with ``torch.load(weights_only=True)``,
the rest as JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

from ckptspec.checkpoint_check import check_checkpoint
from ckptspec.checkpointing.commit import per_group_file, per_rank_file
from ckptspec.checkpointing.distributed import DistContext
from ckptspec.checkpointing.fingerprint import differences
from ckptspec.confined import resolve, scan_tree
from ckptspec.errors import (
    ConfigDriftError,
    GroupLayoutMismatchError,
    IntegrityError,
    NoCheckpointError,
    WorldSizeMismatchError,
)
from ckptspec.file_digest import DigestMismatchError, algorithm_of, digest_file
from ckptspec.findings import Severity, finding
from ckptspec.layout import LAYOUT
from ckptspec.manifest import GROUPED_PATTERNS, RANK_LOCAL_PATTERNS, Component, Manifest
from ckptspec.safe_dcp import safe_planner, safe_reader


class StagedRead(Protocol):
    """A component read by :meth:`CheckpointLoader.read_sharded`, not yet in its state dict."""

    def apply(self) -> None:
        """Copy the values read into the state dict (tensors in place)."""


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

    ``verify``: ``"full"`` (default) checks size and digest of every listed file it reads,
    ``"size"`` only sizes. ``elastic``: re-derive rank-local components on a world-size change instead of
    failing. ``group_sizes``: the group size this run uses for each of its ``per_node``/``per_group``
    components; a checkpoint whose component has another one (another node layout) is treated
    like one of another world size for that component.
    """

    def __init__(
        self,
        ctx: DistContext,
        fingerprint_values: dict[str, Any],
        *,
        elastic: bool = False,
        verify: str = "full",
        group_sizes: Mapping[str, int] | None = None,
    ) -> None:
        if verify not in ("full", "size"):
            raise ValueError(f"verify must be 'full' or 'size', got {verify!r}")
        self.ctx = ctx
        self.fingerprint_values = fingerprint_values
        self.elastic = elastic
        self.verify = verify
        self.group_sizes = dict(group_sizes or {})

    def plan(self, path: Path, required: Sequence[str] = ()) -> LoadPlan:
        """*Collective.* Run every pre-load check on the checkpoint at ``path``; ``required``
        names the components the caller will restore (a checkpoint that lacks one is refused
        with :class:`IntegrityError` now, not half-way through the load)."""
        manifest = self._checked_manifest(path)
        missing = sorted(set(required) - {c.name for c in manifest.components})
        if missing:
            raise IntegrityError(
                [
                    f"{path}: the checkpoint has no component {', '.join(map(repr, missing))}, which this trainer restores"
                ]
            )
        self._check_config(manifest)
        return LoadPlan(path, manifest, self._check_world_size(manifest))

    def plan_weights(self, path: Path) -> LoadPlan:
        """*Collective.* The checks for loading the model component alone, at any world size:
        integrity of the checkpoint (the model's files are verified as :meth:`read_sharded`
        reads them) and an unchanged model architecture."""
        manifest = self._checked_manifest(path, components=("model",))
        drift = differences(
            {"model": manifest.config.values.get("model")},
            {"model": self.fingerprint_values["model"]},
        )
        if drift:
            raise ConfigDriftError(drift)
        return LoadPlan(path, manifest)

    def _checked_manifest(self, path: Path, components: Sequence[str] | None = None) -> Manifest:
        """*Collective.* The manifest of ``path`` once the checkpoint passed the validator's checks
        and the non-DCP files (of ``components``, default all) their digests (DCP files are
        checked as :meth:`read_sharded` reads them); raises the same :class:`IntegrityError` on
        every rank otherwise."""
        if not (path / LAYOUT.manifest_file).is_file():
            raise NoCheckpointError(
                f"{path} is not a committed checkpoint (no {LAYOUT.manifest_file})"
            )
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

    def _digest_problems(
        self, path: Path, manifest: Manifest, components: Sequence[str] | None
    ) -> list[str]:
        """FILE_DIGEST_MISMATCH lines for this rank's share of the listed files of the non-DCP
        components (every ``world_size``-th, by path), read through the validator's confined
        resolution. DCP files are verified as they are read (:meth:`read_sharded`)."""
        listed = sorted(
            (
                f
                for c in manifest.components
                if (components is None or c.name in components) and c.format != "dcp"
                for f in c.files
            ),
            key=lambda f: f.path,
        )
        root = str(path)
        real_root, tree = os.path.realpath(root), scan_tree(root)
        problems = []
        for entry in listed[self.ctx.rank :: self.ctx.world_size]:
            file = os.path.join(root, entry.path)
            resolved = resolve(root, real_root, tree, entry.path)
            try:
                digest = (
                    digest_file(resolved.real_path, algorithm_of(entry.digest), entry.size)
                    if resolved.real_path is not None
                    else None
                )
            except OSError as exc:
                problems.append(
                    finding("FILE_MISSING", file, f"cannot be read: {exc.strerror}").line()
                )
                continue
            if digest != entry.digest:
                problems.append(
                    finding(
                        "FILE_DIGEST_MISMATCH",
                        file,
                        f"has digest {digest}, the manifest says {entry.digest}",
                    ).line()
                )
        return problems

    def _check_config(self, manifest: Manifest) -> None:
        """Fail naming every fingerprinted setting that differs (RESUME-5)."""
        drift = differences(manifest.config.values, self.fingerprint_values)
        if drift:
            raise ConfigDriftError(drift)

    def _check_world_size(self, manifest: Manifest) -> tuple[str, ...]:
        """At another world size, rank-local components fail the load (RESUME-3) or, elastic,
        are returned for re-derivation; at the same world size, so do grouped components whose
        group size differs from this run's (``group_sizes``)."""
        saved = manifest.topology.world_size
        if saved == self.ctx.world_size:
            regrouped = {
                c.name: (c.group_size, self.group_sizes[c.name])
                for c in manifest.components
                if c.sharing in GROUPED_PATTERNS
                and c.name in self.group_sizes
                and c.group_size != self.group_sizes[c.name]
            }
            if regrouped and not self.elastic:
                raise GroupLayoutMismatchError(saved, regrouped)
            return tuple(sorted(regrouped))
        rank_local = tuple(
            sorted(c.name for c in manifest.components if c.sharing in RANK_LOCAL_PATTERNS)
        )
        if rank_local and not self.elastic:
            raise WorldSizeMismatchError(saved, self.ctx.world_size, rank_local)
        return rank_local

    # ------------------------------------------------------------------ payloads
    def read_sharded(self, plan: LoadPlan, name: str, state_dict: dict[str, Any]) -> StagedRead:
        """*Collective.* Read the DCP component ``name`` for ``state_dict`` (any world size)
        without changing it; the returned :class:`StagedRead`'s ``apply()`` copies the values in.

        With ``verify="full"`` each file's size and digest are checked as it is read, before any
        of its bytes are used. If a file on any rank does not match, every rank raises the same
        :class:`IntegrityError`; if the read returns, every rank's read succeeded. Read every
        component first, then apply: no live state changes unless all of them were intact.
        """
        expected = self._expected_files(plan, name)
        reader = safe_reader(plan.path / name, expected, defer_copies=True)
        problems: list[str] = []
        if expected is not None:
            try:
                reader.read_metadata()
            except DigestMismatchError as exc:
                problems = [_mismatch_line(exc)]
            gathered: list[Any] = [None] * self.ctx.world_size
            dist.all_gather_object(gathered, problems)
            problems = sorted({p for rank_problems in gathered for p in rank_problems})
            if problems:
                raise IntegrityError(problems)
        try:
            dcp.load(state_dict, storage_reader=reader, planner=safe_planner())
        except CheckpointException as exc:
            problems = sorted(
                {
                    _mismatch_line(f)
                    for f, _trace in exc.failures.values()
                    if isinstance(f, DigestMismatchError)
                }
            )
            if problems:
                raise IntegrityError(problems) from None
            raise
        return reader

    def _expected_files(self, plan: LoadPlan, name: str) -> dict[str, tuple[int, str]] | None:
        """File name in the component's directory -> listed (size, digest); None without ``verify="full"``."""
        if self.verify != "full":
            return None
        prefix = name + "/"
        return {
            f.path[len(prefix) :]: (f.size, f.digest)
            for f in plan.component(name).files
            if f.path.startswith(prefix)
        }

    def load_json(self, plan: LoadPlan, name: str) -> Any:
        """The value of the JSON component ``name``."""
        (entry,) = plan.component(name).files
        return json.loads((plan.path / entry.path).read_bytes())

    def load_per_rank(self, plan: LoadPlan, name: str) -> dict[str, torch.Tensor]:
        """This rank's file of the per-rank component ``name``."""
        _refuse_rederived(plan, name)
        return torch.load(
            plan.path / self._per_rank_path(plan, name), weights_only=True, map_location="cpu"
        )

    def _per_rank_path(self, plan: LoadPlan, name: str) -> str:
        return per_rank_file(name, self.ctx.rank)

    def load_group(self, plan: LoadPlan, name: str) -> Any:
        """The value of this rank's group of the ``per_node``/``per_group`` component ``name``
        (group ``rank // group_size``)."""
        _refuse_rederived(plan, name)
        return json.loads((plan.path / self._group_path(plan, name)).read_bytes())

    def _group_path(self, plan: LoadPlan, name: str) -> str:
        component = plan.component(name)
        if component.sharing not in GROUPED_PATTERNS or component.group_size is None:
            raise ValueError(
                f"component {name!r} of {plan.path} is {component.sharing}, not a grouped component"
            )
        return per_group_file(name, self.ctx.rank // component.group_size)


def _refuse_rederived(plan: LoadPlan, name: str) -> None:
    if name in plan.rederived:
        raise ValueError(f"component {name!r} is re-derived in this resume, not loaded")


def _mismatch_line(exc: DigestMismatchError) -> str:
    return finding("FILE_DIGEST_MISMATCH", exc.path, exc.problem).line()
