"""The checkpoint manager: commit protocol, discovery, latest, best, retention and rewind.

Layout written (one directory per committed step)::

    <run_dir>/step-000000012/
      manifest.json                 written last (the commit marker)
      model/ optimizer/             DCP directories (sharded, reshardable)
      lr_scheduler.json ...         replicated JSON components (written by rank 0)
      rng/rank-00000.pt ...         per-rank ``torch.load(weights_only=True)`` files

Commit protocol (COMMIT-1..4): every rank writes into ``.staging-step-<step>-<uuid>``, flushing
and fsyncing each file; the ranks then agree on success and gather their file digests in one
collective; rank 0 (after moving rewound steps aside) writes ``manifest.json`` (temporary file,
fsync, rename), renames the staging directory into place, fsyncs the run directory, updates
best and retention, and finally rewrites ``run.json`` atomically. Rank 0 broadcasts the outcome,
so a failure on any rank fails the save on every rank and no rank waits in a collective.

Each run-level behaviour is one small method so that a single behaviour can be changed in a
subclass (the conformance suite's mutants do exactly that).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Optional

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

import ckptspec
from ckptspec.digest import state_digest
from ckptspec.layout import LAYOUT, checkpoint_dir_name, is_staging_dir, parse_checkpoint_dir, staging_dir_name
from ckptspec.manifest import (
    SPEC_VERSION,
    Component,
    ConfigFingerprint,
    EvalResult,
    FileEntry,
    Manifest,
    MeshDim,
    Producer,
    Progress,
    RankDigest,
    ReplicationCheck,
    ResumeRecord,
    Topology,
)
from ckptspec.reference_impl.distributed import DistContext
from ckptspec.reference_impl.fsutil import file_digest, fsync_path, write_atomic, write_durable
from ckptspec.reference_impl.hashing_writer import hashing_writer
from ckptspec.run_index import BestRecord, RetentionPolicy, Rewind, RunIndex

PRODUCER = Producer(name="ckptspec-reference", version=ckptspec.__version__, torch_version=torch.__version__)


class SaveError(RuntimeError):
    """A save failed on at least one rank; nothing was committed."""


def utc_now() -> str:
    """The current time as an RFC 3339 UTC timestamp with milliseconds."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def per_rank_file(name: str, rank: int) -> str:
    """Relative path of ``rank``'s file of the per-rank component ``name``."""
    return f"{name}/rank-{rank:05d}.pt"


@dataclass(frozen=True)
class BestPolicy:
    """How the best checkpoint is chosen."""

    metric: str
    mode: Literal["max", "min"] = "min"
    min_delta: float = 0.0


@dataclass
class SaveRequest:
    """Everything this rank contributes to the checkpoint of ``progress.global_step``.

    ``sharded``: name -> (kind, DCP state dict); ``replicated``: name -> (kind, JSON value),
    identical on every rank; ``per_rank``: name -> (kind, mapping of tensors) for this rank.
    """

    progress: Progress
    config: ConfigFingerprint
    sharded: dict[str, tuple[str, dict[str, Any]]]
    replicated: dict[str, tuple[str, Any]]
    per_rank: dict[str, tuple[str, dict[str, torch.Tensor]]]
    step_counts: dict[str, int] = field(default_factory=dict)
    eval: Optional[EvalResult] = None
    resumed_from: Optional[ResumeRecord] = None

    @property
    def step(self) -> int:
        return self.progress.global_step


@dataclass
class _PendingSave:
    request: SaveRequest
    staging: Path
    futures: list[Any]
    digests: list[dict[Path, tuple[int, str]]]  # one per DCP writer, filled as it writes
    local_files: dict[Path, bytes]  # this rank's JSON and per-rank files, serialised at save time
    error: Optional[str]


class CheckpointManager:
    """Writes and discovers the committed checkpoints of one run directory.

    Collective methods (``startup``, ``save``, ``save_async``, ``wait``) must be called on every
    rank in the same order. Discovery reads the directory and needs no collective.
    """

    def __init__(
        self,
        run_dir: Path,
        run_id: str,
        ctx: DistContext,
        *,
        keep_last: Optional[int] = None,
        best: Optional[BestPolicy] = None,
        async_groups: Optional[dict[str, dist.ProcessGroup]] = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.ctx = ctx
        self.keep_last = keep_last
        self.best_policy = best
        self.best: Optional[BestRecord] = None
        self.rewinds: list[Rewind] = []
        self.async_groups = async_groups or {}
        self._async_writers: dict[str, FileSystemWriter] = {}
        self._async_stagers: dict[str, DefaultStager] = {}  # reused: host copies stay allocated
        self.crash_during_save_step: Optional[int] = None
        self._pending: Optional[_PendingSave] = None
        self._started = False

    # ------------------------------------------------------------------ discovery
    def checkpoint_path(self, step: int) -> Path:
        return self.run_dir / checkpoint_dir_name(step)

    def committed_steps(self) -> list[int]:
        """Steps of the committed checkpoints, ascending: a ``step-N`` directory holding a manifest.

        Discovery is by name and commit marker only, never by modification time (LAYOUT-8).
        """
        if not self.run_dir.is_dir():
            return []
        steps = []
        for entry in self.run_dir.iterdir():
            step = parse_checkpoint_dir(entry.name)
            if step is not None and not entry.is_symlink() and (entry / LAYOUT.manifest_file).is_file():
                steps.append(step)
        return sorted(steps)

    def latest(self) -> Optional[Path]:
        """The committed checkpoint with the highest step, or None."""
        steps = self.committed_steps()
        return self.checkpoint_path(steps[-1]) if steps else None

    # ------------------------------------------------------------------ start-up
    def startup(self) -> None:
        """*Collective.* Create the run directory, remove stale staging directories and
        rehydrate best and the rewind history from ``run.json`` (rank 0 reads, then broadcasts)."""
        if self._started:
            return
        state: list[Any] = [None]
        if self.ctx.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._clean_stale_staging()
            index = self._read_index()
            state[0] = (self._rehydrate_best(index), list(index.rewinds) if index else [])
        dist.broadcast_object_list(state, src=0)
        self.best, self.rewinds = state[0]
        self._started = True

    def _clean_stale_staging(self) -> None:
        """Delete in-flight saves left behind by a crashed writer (rank 0, at start-up)."""
        for entry in self.run_dir.iterdir():
            if is_staging_dir(entry.name):
                shutil.rmtree(entry, ignore_errors=True)

    def _read_index(self) -> Optional[RunIndex]:
        path = self.run_dir / LAYOUT.run_index_file
        if not path.is_file():
            return None
        try:
            return RunIndex.model_validate_json(path.read_bytes())
        except ValueError as exc:
            warnings.warn(f"{path} is not a valid run index ({exc}); rebuilding it from the checkpoints")
            return None

    def _rehydrate_best(self, index: Optional[RunIndex]) -> Optional[BestRecord]:
        """The best record to continue from: the stored one if it tracks the same metric and
        mode and still points at a committed checkpoint, else a fresh one (RUN-4)."""
        policy = self.best_policy
        if policy is None:
            return None
        fresh = BestRecord(metric=policy.metric, mode=policy.mode, min_delta=policy.min_delta)
        stored = index.best if index else None
        if stored is None or (stored.metric, stored.mode) != (policy.metric, policy.mode):
            return fresh
        if stored.step is not None and stored.step not in self.committed_steps():
            return fresh
        return stored.model_copy(update={"min_delta": policy.min_delta})

    # ------------------------------------------------------------------ best
    def improves(self, metrics: Optional[dict[str, float]]) -> bool:
        """Whether ``metrics`` would become the new best (identical on every rank: metrics are
        global and the record is agreed)."""
        if self.best is None or not metrics or self.best.metric not in metrics:
            return False
        score = metrics[self.best.metric]
        if self.best.score is None:
            return True
        if self.best.mode == "min":
            return score < self.best.score - self.best.min_delta
        return score > self.best.score + self.best.min_delta

    def _update_best(self, step: int, eval_result: Optional[EvalResult]) -> None:
        if eval_result is not None and self.improves(eval_result.metrics):
            assert self.best is not None
            self.best = self.best.model_copy(update={"step": step, "score": eval_result.metrics[self.best.metric]})

    # ------------------------------------------------------------------ save
    def save(self, request: SaveRequest) -> Path:
        """*Collective.* Write and commit the checkpoint of ``request.step``; return its directory.

        Raises :class:`SaveError` on every rank if any rank failed; then nothing is committed.
        """
        self._begin(request, async_save=False)
        return self.wait()

    def save_async(self, request: SaveRequest) -> None:
        """*Collective.* Start a save whose sharded payloads are written in the background.

        Returns once the state is staged; training may continue. The checkpoint is committed by
        the next :meth:`wait` (called by the next save, and by the trainer before it exits).
        """
        self._begin(request, async_save=True)

    def wait(self) -> Path:
        """*Collective.* Finish the pending save: agree, gather digests, commit. Returns its directory."""
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError("no save in progress")
        entries, error = self._finish_local(pending)
        gathered: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(gathered, (self.ctx.rank, error, entries, self._replica_digests(pending.request)))
        errors = [f"rank {r}: {e}" for r, e, _, _ in gathered if e]
        if not errors:
            errors = self._replication_problems(gathered)
        if not errors and self.crash_during_save_step == pending.request.step:
            self._crash_mid_commit(pending, gathered)
        outcome: list[Any] = [None]
        if self.ctx.rank == 0:
            outcome[0] = self._commit_or_abort(pending, gathered, errors)
        dist.broadcast_object_list(outcome, src=0)
        error, self.best = outcome[0]
        if error:
            raise SaveError(f"checkpoint of step {pending.request.step} was not committed: {error}")
        return self.checkpoint_path(pending.request.step)

    @property
    def save_in_progress(self) -> bool:
        return self._pending is not None

    def _begin(self, request: SaveRequest, async_save: bool) -> None:
        if self._pending is not None:
            self.wait()
        self.startup()
        token: list[Any] = [None]
        if self.ctx.rank == 0:
            try:
                staging = self.run_dir / staging_dir_name(request.step, uuid.uuid4().hex)
                staging.mkdir()
                token[0] = (str(staging), None)
            except OSError as exc:
                token[0] = (None, f"rank 0: cannot create the staging directory: {exc}")
        dist.broadcast_object_list(token, src=0)
        staging_name, error = token[0]
        if error:
            raise SaveError(error)
        staging = Path(staging_name)
        futures, digests, error = [], [], None
        for name, (_, state) in request.sharded.items():
            writer = self._writer(name, staging / name, async_save)
            digests.append(writer.fs.digests)
            try:
                future = self._write_sharded(writer, name, state, async_save)
            except Exception as exc:  # DCP raises on every rank alike; agreed on in wait()
                error = error or f"{name}: {type(exc).__name__}: {exc}"
                continue
            futures += [future] if future is not None else []
        try:
            local_files = self._serialize_local(staging, request)
        except Exception as exc:  # reported to every rank through the agreement collective
            local_files, error = {}, error or f"{type(exc).__name__}: {exc}"
        self._pending = _PendingSave(request, staging, futures, digests, local_files, error)

    def _writer(self, name: str, path: Path, async_save: bool) -> FileSystemWriter:
        """A hashing DCP writer for ``path``. Asynchronous saves of CUDA state reuse one writer per
        component, so that its pinned host buffers are allocated once (saves never overlap: see
        ``_begin``); DCP pins cached buffers, which needs CUDA."""
        if not (async_save and self.ctx.device.type == "cuda"):
            return hashing_writer(path)
        writer = self._async_writers.setdefault(name, hashing_writer(path, cache_staged_state_dict=True))
        writer.reset(path)
        writer.fs.digests.clear()
        return writer

    def _write_sharded(self, writer: FileSystemWriter, name: str, state: dict[str, Any], async_save: bool) -> Any:
        """*Collective.* Write one DCP component (DCP fsyncs its files and shares its own errors).

        An asynchronous write stages the state to host memory, then writes in a background
        thread whose collectives use the component's own process group in ``async_groups``
        (concurrent writes must not share a group, nor share one with training)."""
        if async_save:
            if name not in self.async_groups:
                raise ValueError(f"asynchronous save of {name!r} needs a process group in async_groups")
            stager = self._async_stagers.setdefault(name, DefaultStager(StagingOptions(False, False, False, False)))
            return dcp.async_save(state, storage_writer=writer, process_group=self.async_groups[name], async_stager=stager)
        dcp.save(state, storage_writer=writer)
        return None

    def _serialize_local(self, staging: Path, request: SaveRequest) -> dict[Path, bytes]:
        """This rank's JSON (rank 0) and per-rank files as bytes, captured now: an asynchronous
        save writes them with its payloads, after training has moved on."""
        files = {}
        if self.ctx.rank == 0:
            for name, (_, value) in request.replicated.items():
                files[staging / f"{name}.json"] = _json_bytes(value)
        for name, (_, tensors) in request.per_rank.items():
            buffer = io.BytesIO()
            torch.save(tensors, buffer)
            files[staging / per_rank_file(name, self.ctx.rank)] = buffer.getvalue()
        return files

    @staticmethod
    def _write_local(files: dict[Path, bytes]) -> None:
        """Write (and fsync) the serialised local files."""
        for path, data in files.items():
            path.parent.mkdir(exist_ok=True)
            write_durable(path, data)

    def _finish_local(self, pending: _PendingSave) -> tuple[list[tuple[str, int, str]], Optional[str]]:
        """Wait for background writes; digest the files this rank wrote as (path, size, sha256)."""
        error = pending.error
        for future in pending.futures:
            try:
                future.result()
            except Exception as exc:
                error = error or f"{type(exc).__name__}: {exc}"
        if error:
            return [], error
        try:
            self._write_local(pending.local_files)
            known = {path: digest for digests in pending.digests for path, digest in digests.items()}
            known.update({path: (len(data), hashlib.sha256(data).hexdigest()) for path, data in pending.local_files.items()})
            entries = []
            for path in self._files_written_by_me(pending.staging, pending.request):
                size, sha = known.get(path) or file_digest(path)
                entries.append((path.relative_to(pending.staging).as_posix(), size, sha))
            for directory in sorted({p.parent for p in pending.staging.rglob("*")} | {pending.staging}):  # reproducible fault points
                fsync_path(directory)
            return entries, None
        except OSError as exc:
            return [], f"{type(exc).__name__}: {exc}"

    def _files_written_by_me(self, staging: Path, request: SaveRequest) -> list[Path]:
        rank = self.ctx.rank
        files = []
        for name in request.sharded:
            files += sorted((staging / name).glob(f"__{rank}_*.distcp"))
            if rank == 0:
                files.append(staging / name / ".metadata")
        if rank == 0:
            files += [staging / f"{name}.json" for name in request.replicated]
        files += [staging / per_rank_file(name, rank) for name in request.per_rank]
        return files

    def _replica_digests(self, request: SaveRequest) -> dict[str, str]:
        return {name: state_digest(value) for name, (_, value) in request.replicated.items()}

    def _replication_problems(self, gathered: list[Any]) -> list[str]:
        """Replicated components whose digests differ across ranks (MANIFEST-11)."""
        names = gathered[0][3].keys()
        return [f"replicated component {n!r} differs across ranks" for n in names if len({g[3][n] for g in gathered}) > 1]

    # ------------------------------------------------------------------ commit (rank 0)
    def _commit_or_abort(self, pending: _PendingSave, gathered: list[Any], errors: list[str]) -> tuple[Optional[str], Any]:
        if not errors:
            try:
                manifest = self._build_manifest(pending.request, gathered)
                self._commit(pending.staging, self.checkpoint_path(pending.request.step), manifest)
                return None, self.best
            except Exception as exc:
                errors = [f"rank 0 commit: {type(exc).__name__}: {exc}"]
        shutil.rmtree(pending.staging, ignore_errors=True)
        return "; ".join(errors), self.best

    def _commit(self, staging: Path, final: Path, manifest: Manifest) -> None:
        """Rewind, write the manifest, publish the directory, then update best, retention and the index."""
        self._rewind(manifest.step, manifest.resumed_from)
        self._write_manifest(staging, manifest)
        self._publish(staging, final)
        self._update_best(manifest.step, manifest.eval)
        self._apply_retention(just_written=manifest.step)
        self._write_index()

    def _write_manifest(self, staging: Path, manifest: Manifest) -> None:
        write_atomic(staging / LAYOUT.manifest_file, manifest.model_dump_json(indent=2).encode())

    def _publish(self, staging: Path, final: Path) -> None:
        os.rename(staging, final)
        fsync_path(self.run_dir)

    def _crash_mid_commit(self, pending: _PendingSave, gathered: list[Any]) -> None:
        """Test hook: every rank dies by SIGKILL in the middle of the commit, after rank 0 has
        written a complete manifest inside the staging directory (which is never renamed)."""
        if self.ctx.rank == 0:
            self._write_manifest(pending.staging, self._build_manifest(pending.request, gathered))
        dist.barrier()
        os.kill(os.getpid(), signal.SIGKILL)

    def _build_manifest(self, request: SaveRequest, gathered: list[Any]) -> Manifest:
        files: dict[str, FileEntry] = {}
        for rank, _, entries, _ in gathered:
            for path, size, sha in entries:
                files[path] = FileEntry(path=path, size=size, sha256=sha, ranks=[rank])

        def component(name: str, kind: str, sharing: str, fmt: str, prefix: str) -> Component:
            listed = [files[p] for p in sorted(files) if p == prefix or p.startswith(prefix + "/")]
            return Component(
                name=name, kind=kind, sharing=sharing, format=fmt, reshardable=sharing != "per_rank",
                step_count=request.step_counts.get(name), files=listed,
            )

        components = [component(n, k, "sharded", "dcp", n) for n, (k, _) in request.sharded.items()]
        components += [component(n, k, "replicated", "json", f"{n}.json") for n, (k, _) in request.replicated.items()]
        components += [component(n, k, "per_rank", "torch_weights_only", n) for n, (k, _) in request.per_rank.items()]
        replication = [
            ReplicationCheck(component=name, digests=[RankDigest(rank=g[0], sha256=g[3][name]) for g in gathered])
            for name in request.replicated
        ]
        world = self.ctx.world_size
        return Manifest(
            spec_version=SPEC_VERSION,
            producer=PRODUCER,
            run_id=self.run_id,
            step=request.step,
            created_at=utc_now(),
            topology=Topology(
                world_size=world,
                device_type=self.ctx.device.type,
                backend=dist.get_backend(),
                mesh=[MeshDim(name="dp_shard", size=world)],
            ),
            progress=request.progress,
            config=request.config,
            components=components,
            replication=replication,
            eval=request.eval,
            resumable=True,
            resumed_from=request.resumed_from,
        )

    # ------------------------------------------------------------------ rewind, retention, index (rank 0)
    def _rewind(self, step: int, resumed_from: Optional[ResumeRecord]) -> None:
        """Move committed steps >= ``step`` to ``.rewound/<fork id>/``, record the fork and clear a
        best record that pointed into them (RUN-6). The index is rewritten at once, so it agrees
        with the directories even if the save is then interrupted."""
        later = [s for s in self.committed_steps() if s >= step]
        if not later:
            return
        fork_id = f"fork-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        target = self.run_dir / LAYOUT.rewound_dir / fork_id
        target.mkdir(parents=True)
        for s in later:
            os.rename(self.checkpoint_path(s), target / checkpoint_dir_name(s))
        fsync_path(target)
        fsync_path(self.run_dir)
        kept = [s for s in self.committed_steps() if s < step]
        self.rewinds.append(
            Rewind(
                fork_id=fork_id,
                at=utc_now(),
                resumed_from_step=resumed_from.step if resumed_from else (kept[-1] if kept else 0),
                discarded_steps=later,
                moved_to=f"{LAYOUT.rewound_dir}/{fork_id}",
            )
        )
        if self.best is not None and self.best.step in later:
            self.best = self.best.model_copy(update={"step": None, "score": None})
        self._write_index()

    def _retention_protected(self, steps: list[int], just_written: int) -> set[int]:
        """Steps retention never deletes: the newest ``keep_last``, latest, best, just written (RUN-5)."""
        protected = {steps[-1], just_written}
        if self.keep_last:
            protected.update(steps[-self.keep_last :])
        if self.best is not None and self.best.step is not None:
            protected.add(self.best.step)
        return protected

    def _apply_retention(self, just_written: int) -> None:
        """Delete checkpoints beyond ``keep_last``; a failed deletion is a warning, not an error."""
        if not self.keep_last:
            return
        steps = self.committed_steps()
        protected = self._retention_protected(steps, just_written)
        for step in steps:
            if step in protected:
                continue
            path = self.checkpoint_path(step)
            try:
                (path / LAYOUT.manifest_file).unlink()  # no longer a checkpoint from here on
                fsync_path(path)
                shutil.rmtree(path)
            except OSError as exc:
                warnings.warn(f"retention could not delete {path}: {exc}")

    def _write_index(self) -> None:
        steps = self.committed_steps()
        index = RunIndex(
            spec_version=SPEC_VERSION,
            run_id=self.run_id,
            latest_step=steps[-1] if steps else None,
            best=self.best,
            retention=RetentionPolicy(keep_last=self.keep_last),
            rewinds=self.rewinds,
            updated_at=utc_now(),
        )
        write_atomic(self.run_dir / LAYOUT.run_index_file, index.model_dump_json(indent=2).encode())


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=False).encode()
