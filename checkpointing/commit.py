"""The commit protocol: stage, agree, publish (COMMIT-1..4).

Layout written (one directory per committed step)::

    <run_dir>/step-000000012/
      manifest.json                 written last (the commit marker)
      model/ optimizer/             DCP directories (sharded, reshardable)
      lr_scheduler.json ...         replicated JSON components (written by rank 0)
      rng/rank-00000.pt ...         per-rank ``torch.load(weights_only=True)`` files
      node_ledger/group-00000.json  per-node / per-group JSON files (written by each group's first rank)

Every rank writes into ``.staging-step-<step>-<uuid>``, flushing and fsyncing each file and
hashing it as it is written; the ranks then agree on success and gather what each wrote
(:class:`RankReport`) in one collective; rank 0 lets the run policy fork the timeline if needed,
writes ``manifest.json`` (temporary file, fsync, rename), renames the staging directory into
place and fsyncs the run directory: from then on the checkpoint is committed. The policy then
updates best, ``run.json`` and retention (a failure there is a warning). Rank 0 broadcasts the
outcome, so a failure on any rank fails the save on every rank and no rank waits in a
collective. A failed save removes its staging directory when it can.

Each step is one small method so that a single behaviour can be changed in a subclass (the
conformance suite's mutants do exactly that). The module is a little over 400 lines because it
holds the whole protocol, in the order a save happens, with the records ranks exchange; the
run-level policy it calls is :mod:`ckptspec.checkpointing.run_policy`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

import ckptspec
from ckptspec import SPEC_VERSION
from ckptspec.checkpointing.distributed import DistContext
from ckptspec.checkpointing.fsio import file_digest, fsync_path, write_atomic, write_durable
from ckptspec.checkpointing.hashing_writer import hashing_writer
from ckptspec.checkpointing.run_policy import RunPolicy, utc_now
from ckptspec.digest import state_digest
from ckptspec.file_digest import DEFAULT_ALGORITHM, digest_bytes, new_hasher
from ckptspec.layout import LAYOUT, staging_dir_name
from ckptspec.manifest import (
    GROUPED_PATTERNS,
    RANK_LOCAL_PATTERNS,
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
from ckptspec.run_index import BestRecord
from ckptspec.safe_dcp import DCP_METADATA_FILE

PRODUCER = Producer(
    name="ckptspec-reference", version=ckptspec.__version__, torch_version=torch.__version__
)


class SaveError(RuntimeError):
    """A save failed on at least one rank: nothing was committed or, as the message then says,
    the checkpoint was renamed into place but the rename could not be made durable."""


CHECKPOINT_ERRORS: tuple[type[BaseException], ...] = (Exception, CheckpointException)
"""What a failed write of torch's checkpoint code may raise: its ``CheckpointException`` derives
from ``BaseException`` and must be handled where ``Exception`` is (but not ``KeyboardInterrupt``)."""


def describe_failure(exc: BaseException) -> str:
    """``Type: message`` on one line; torch's ``CheckpointException`` (whose text embeds
    tracebacks) becomes the underlying error of each failed rank."""
    if isinstance(exc, CheckpointException):
        return "; ".join(
            f"rank {rank}: {describe_failure(cause)}"
            for rank, (cause, _) in sorted(exc.failures.items())
        )
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def per_rank_file(name: str, rank: int) -> str:
    """Relative path of ``rank``'s file of the per-rank component ``name``."""
    return f"{name}/rank-{rank:05d}.pt"


def per_group_file(name: str, group: int) -> str:
    """Relative path of group ``group``'s file of the ``per_node``/``per_group`` component ``name``."""
    return f"{name}/group-{group:05d}.json"


@dataclass(frozen=True)
class GroupState:
    """A ``per_node`` or ``per_group`` component as one rank holds it: a JSON ``value`` identical
    on the ``group_size`` consecutive ranks of group ``rank // group_size`` (for ``per_node``,
    the ranks of one node). The group's first rank writes it; a save fails if the group's ranks
    disagree."""

    kind: str
    sharing: str
    group_size: int
    value: Any

    def __post_init__(self) -> None:
        if self.sharing not in GROUPED_PATTERNS or self.group_size < 1:
            raise ValueError(
                f"a grouped component needs sharing per_node or per_group and a group size >= 1, "
                f"got {self.sharing!r} with group size {self.group_size}"
            )

    def file_of(self, name: str, rank: int) -> str | None:
        """The file ``rank`` writes for component ``name``: its group's, if it is the group's first rank."""
        return (
            per_group_file(name, rank // self.group_size) if rank % self.group_size == 0 else None
        )


@dataclass
class SaveRequest:
    """Everything this rank contributes to the checkpoint of ``progress.global_step``.

    ``sharded``: name -> (kind, DCP state dict); ``replicated``: name -> (kind, JSON value),
    identical on every rank; ``per_rank``: name -> (kind, mapping of tensors) for this rank;
    ``grouped``: name -> this rank's :class:`GroupState` of a ``per_node``/``per_group`` component.
    """

    progress: Progress
    config: ConfigFingerprint
    sharded: dict[str, tuple[str, dict[str, Any]]]
    replicated: dict[str, tuple[str, Any]]
    per_rank: dict[str, tuple[str, dict[str, torch.Tensor]]]
    step_counts: dict[str, int] = field(default_factory=dict)
    grouped: dict[str, GroupState] = field(default_factory=dict)
    eval: EvalResult | None = None
    resumed_from: ResumeRecord | None = None

    @property
    def step(self) -> int:
        return self.progress.global_step


@dataclass(frozen=True)
class WrittenFile:
    """One file a rank wrote into the staging directory."""

    path: str  # relative to the checkpoint directory, ``/``-separated
    size: int
    digest: str  # ``<algorithm>:<hex>``, as the manifest lists it


@dataclass(frozen=True)
class RankReport:
    """What each rank contributes to the agreement collective of a save."""

    rank: int
    error: str | None  # why this rank's part of the save failed; None if it succeeded
    files: tuple[WrittenFile, ...]
    replica_digests: dict[str, str]  # replicated component -> canonical digest (MANIFEST-11)
    group_digests: dict[str, str] = field(
        default_factory=dict
    )  # grouped component -> digest of this rank's GroupState


@dataclass(frozen=True)
class Outcome:
    """What rank 0 broadcasts after a commit attempt."""

    error: str | None  # why the save failed ("was not committed: ..." or "was published but ...")
    best: BestRecord | None


@dataclass
class PendingSave:
    """A save whose state is staged: its payload writes may still be running."""

    request: SaveRequest
    staging: Path
    futures: list[Any]
    digests: list[dict[Path, tuple[int, str]]]  # one per DCP writer, filled as it writes
    local_files: dict[Path, bytes]  # this rank's JSON and per-rank files, serialised at save time
    replica_digests: dict[str, str]  # replicated component -> canonical digest, at save time
    error: str | None
    group_digests: dict[str, str] = field(
        default_factory=dict
    )  # grouped component -> digest, at save time


class CommitProtocol:
    """Writes and commits the checkpoints of one run, under its :class:`RunPolicy`.

    Collective methods (``save``, ``save_async``, ``wait``) must be called on every rank in the
    same order. The first save claims the run (:meth:`RunPolicy.startup`). Files are listed
    with digests of ``digest_algorithm`` (one of :data:`ckptspec.file_digest.ALGORITHMS`).
    """

    def __init__(
        self,
        policy: RunPolicy,
        *,
        async_groups: dict[str, dist.ProcessGroup] | None = None,
        digest_algorithm: str = DEFAULT_ALGORITHM,
    ) -> None:
        new_hasher(digest_algorithm)  # refuses an algorithm the spec does not list
        self.policy = policy
        self.ctx: DistContext = policy.ctx
        self.digest_algorithm = digest_algorithm
        self.async_groups = async_groups or {}
        self._async_writers: dict[str, FileSystemWriter] = {}
        self._async_stagers: dict[str, DefaultStager] = {}  # reused: host copies stay allocated
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckptspec-commit")
        self._in_flight: Future[Path] | None = None

    # ------------------------------------------------------------------ save
    def save(self, request: SaveRequest) -> Path:
        """*Collective.* Write and commit the checkpoint of ``request.step``; return its directory.

        Raises :class:`SaveError` on every rank if any rank failed; then nothing is committed.
        """
        return self._complete(self._begin(request, async_save=False), group=None)

    def save_async(self, request: SaveRequest) -> None:
        """*Collective.* Start a save that completes in the background.

        Returns once the state is copied to host memory; training may continue. Everything else
        (payload writes, digests, fsync, the agreement of ranks, manifest, rename, run index)
        runs on a background thread whose collectives use the process groups of
        ``async_groups`` (one per DCP component, and ``"commit"`` for the agreement). The
        checkpoint is committed when :meth:`wait` returns (the next save waits first).
        """
        if "commit" not in self.async_groups:
            raise ValueError(
                "an asynchronous save needs a process group for its agreement in async_groups['commit']"
            )
        pending = self._begin(request, async_save=True)
        self._in_flight = self._committer.submit(
            self._complete, pending, self.async_groups["commit"]
        )

    def wait(self) -> Path:
        """*Collective.* Wait for the save in flight to commit; return its directory, or raise its
        :class:`SaveError` (on every rank alike)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            raise RuntimeError("no save in progress")
        return in_flight.result()

    @property
    def save_in_progress(self) -> bool:
        return self._in_flight is not None

    def _complete(self, pending: PendingSave, group: dist.ProcessGroup | None) -> Path:
        """*Collective over ``group``.* Finish a staged save: wait for its writes, agree, gather
        digests, commit. Returns its directory; raises :class:`SaveError` on every rank."""
        files, error = self._finish_local(pending)
        gathered: list[Any] = [None] * self.ctx.world_size
        mine = RankReport(
            self.ctx.rank, error, tuple(files), pending.replica_digests, pending.group_digests
        )
        dist.all_gather_object(gathered, mine, group=group)
        reports: list[RankReport] = gathered
        errors = [f"rank {r.rank}: {r.error}" for r in reports if r.error]
        if not errors:
            errors = self._replication_problems(reports) + self._group_problems(
                reports, pending.request
            )
        outcome: list[Any] = [None]
        if self.ctx.rank == 0:
            outcome[0] = self._commit_or_abort(pending, reports, errors)
        dist.broadcast_object_list(outcome, src=0, group=group)
        result: Outcome = outcome[0]
        self.policy.best = result.best
        if result.error:
            raise SaveError(f"checkpoint of step {pending.request.step} {result.error}")
        return self.policy.checkpoint_path(pending.request.step)

    def _begin(self, request: SaveRequest, async_save: bool) -> PendingSave:
        if self._in_flight is not None:
            self.wait()
        self.policy.startup()
        token: list[Any] = [None]
        if self.ctx.rank == 0:
            try:
                staging = self.policy.run_dir / staging_dir_name(request.step, uuid.uuid4().hex)
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
            except CHECKPOINT_ERRORS as exc:  # DCP raises on every rank alike; agreed on in wait()
                error = error or f"{name}: {describe_failure(exc)}"
                continue
            futures += [future] if future is not None else []
        try:
            local_files = self._serialize_local(staging, request)
        except Exception as exc:  # reported to every rank through the agreement collective
            local_files, error = {}, error or describe_failure(exc)
        return PendingSave(
            request,
            staging,
            futures,
            digests,
            local_files,
            self._replica_digests(request),
            error,
            {name: state_digest(asdict(state)) for name, state in request.grouped.items()},
        )

    def _writer(self, name: str, path: Path, async_save: bool) -> FileSystemWriter:
        """A hashing DCP writer for ``path``. Asynchronous saves of CUDA state reuse one writer per
        component, so that its pinned host buffers are allocated once (saves never overlap: see
        ``_begin``); DCP pins cached buffers, which needs CUDA."""
        if not (async_save and self.ctx.device.type == "cuda"):
            return hashing_writer(path, self.digest_algorithm)
        writer = self._async_writers.setdefault(
            name, hashing_writer(path, self.digest_algorithm, cache_staged_state_dict=True)
        )
        writer.reset(path)
        writer.fs.digests.clear()
        return writer

    def _write_sharded(
        self, writer: FileSystemWriter, name: str, state: dict[str, Any], async_save: bool
    ) -> Any:
        """*Collective.* Write one DCP component (DCP fsyncs its files and shares its own errors).

        An asynchronous write stages the state to host memory, then writes in a background
        thread whose collectives use the component's own process group in ``async_groups``
        (concurrent writes must not share a group, nor share one with training)."""
        if async_save:
            if name not in self.async_groups:
                raise ValueError(
                    f"asynchronous save of {name!r} needs a process group in async_groups"
                )
            stager = self._async_stagers.setdefault(
                name, DefaultStager(StagingOptions(False, False, False, False))
            )
            return dcp.async_save(
                state,
                storage_writer=writer,
                process_group=self.async_groups[name],
                async_stager=stager,
            )
        dcp.save(state, storage_writer=writer)
        return None

    def _serialize_local(self, staging: Path, request: SaveRequest) -> dict[Path, bytes]:
        """This rank's JSON (rank 0, and groups it leads) and per-rank files as bytes, captured now:
        an asynchronous save writes them with its payloads, after training has moved on."""
        files = {}
        if self.ctx.rank == 0:
            for name, (_, value) in request.replicated.items():
                files[staging / f"{name}.json"] = _json_bytes(value)
        for name, (_, tensors) in request.per_rank.items():
            buffer = io.BytesIO()
            torch.save(tensors, buffer)
            files[staging / per_rank_file(name, self.ctx.rank)] = buffer.getvalue()
        for name, state in request.grouped.items():
            if (path := state.file_of(name, self.ctx.rank)) is not None:
                files[staging / path] = _json_bytes(state.value)
        return files

    @staticmethod
    def _write_local(files: dict[Path, bytes]) -> None:
        """Write (and fsync) the serialised local files."""
        for path, data in files.items():
            path.parent.mkdir(exist_ok=True)
            write_durable(path, data)

    def _finish_local(self, pending: PendingSave) -> tuple[list[WrittenFile], str | None]:
        """Wait for background writes; describe the files this rank wrote, or why it failed."""
        error = pending.error
        for future in pending.futures:
            try:
                future.result()
            except CHECKPOINT_ERRORS as exc:
                error = error or describe_failure(exc)
        if error:
            return [], error
        try:
            self._write_local(pending.local_files)
            known = {
                path: digest for digests in pending.digests for path, digest in digests.items()
            }
            known.update(
                {
                    path: (len(data), digest_bytes(data, self.digest_algorithm))
                    for path, data in pending.local_files.items()
                }
            )
            entries = []
            mine = self._files_written_by_me(pending.staging, pending.request)
            for path in mine:
                if path.name == DCP_METADATA_FILE:
                    # DCP fsyncs it before flushing its buffered stream: a .metadata smaller
                    # than the buffer is not durable when the save returns (docs/matrix/bugs.md)
                    fsync_path(path)
                size, digest = known.get(path) or file_digest(path, self.digest_algorithm)
                entries.append(
                    WrittenFile(path.relative_to(pending.staging).as_posix(), size, digest)
                )
            self._fsync_directories(mine, pending.staging)
            return entries, None
        except Exception as exc:  # any failure here must still reach the agreement collective
            return [], describe_failure(exc)

    def _fsync_directories(self, mine: list[Path], staging: Path) -> None:
        """fsync the directories of this rank's own files and ``staging``, in a fixed order: never
        another rank's (which may or may not exist yet), so every run of a save has the same
        fault points."""
        for directory in sorted({p.parent for p in mine} | {staging}):
            fsync_path(directory)

    def _files_written_by_me(self, staging: Path, request: SaveRequest) -> list[Path]:
        rank = self.ctx.rank
        files = []
        for name in request.sharded:
            files += sorted((staging / name).glob(f"__{rank}_*.distcp"))
            if rank == 0:
                files.append(staging / name / DCP_METADATA_FILE)
        if rank == 0:
            files += [staging / f"{name}.json" for name in request.replicated]
        files += [staging / per_rank_file(name, rank) for name in request.per_rank]
        files += [
            staging / path
            for name, state in request.grouped.items()
            if (path := state.file_of(name, rank)) is not None
        ]
        return files

    def _replica_digests(self, request: SaveRequest) -> dict[str, str]:
        return {name: state_digest(value) for name, (_, value) in request.replicated.items()}

    def _replication_problems(self, reports: list[RankReport]) -> list[str]:
        """Replicated components whose digests differ across ranks (MANIFEST-11)."""
        names = reports[0].replica_digests.keys()
        return [
            f"replicated component {n!r} differs across ranks"
            for n in names
            if len({r.replica_digests[n] for r in reports}) > 1
        ]

    def _group_problems(self, reports: list[RankReport], request: SaveRequest) -> list[str]:
        """Grouped components whose group size does not divide the world, or whose state (value
        and group size) differs between the ranks of a group: the file written would not be the group's."""
        problems = []
        for name, state in request.grouped.items():
            size = state.group_size
            if len(reports) % size:
                problems.append(
                    f"{state.sharing} component {name!r}: group size {size} does not divide world size {len(reports)}"
                )
                continue
            for first in range(0, len(reports), size):
                if len({r.group_digests.get(name) for r in reports[first : first + size]}) > 1:
                    problems.append(
                        f"{state.sharing} component {name!r} differs within group {first // size} "
                        f"(ranks {first}-{first + size - 1})"
                    )
        return problems

    # ------------------------------------------------------------------ commit (rank 0)
    def _commit_or_abort(
        self, pending: PendingSave, reports: list[RankReport], errors: list[str]
    ) -> Outcome:
        """Rank 0: commit when no rank failed; otherwise (or when the commit fails before its
        rename) remove the staging directory. Never raises."""
        final = self.policy.checkpoint_path(pending.request.step)
        if not errors:
            try:
                manifest = self._build_manifest(pending.request, reports)
                self._commit(pending.staging, final, manifest)
            except Exception as exc:
                if not pending.staging.exists() and (final / LAYOUT.manifest_file).is_file():
                    return Outcome(
                        "was published but its rename may not be durable: " + describe_failure(exc),
                        self.policy.best,
                    )
                errors = ["rank 0 commit: " + describe_failure(exc)]
            else:
                self.policy.after_commit(manifest)
                return Outcome(None, self.policy.best)
        shutil.rmtree(pending.staging, ignore_errors=True)
        return Outcome("was not committed: " + "; ".join(errors), self.policy.best)

    def _commit(self, staging: Path, final: Path, manifest: Manifest) -> None:
        """Let the policy fork the timeline, write the manifest and publish the directory: once
        this returns, the checkpoint is committed (COMMIT-1)."""
        self.policy.before_publish(manifest)
        self._write_manifest(staging, manifest)
        self._publish(staging, final)

    def _write_manifest(self, staging: Path, manifest: Manifest) -> None:
        write_atomic(staging / LAYOUT.manifest_file, manifest.model_dump_json(indent=2).encode())

    def _publish(self, staging: Path, final: Path) -> None:
        os.rename(staging, final)
        fsync_path(self.policy.run_dir)

    def _build_manifest(self, request: SaveRequest, reports: list[RankReport]) -> Manifest:
        files: dict[str, FileEntry] = {}
        for report in reports:
            for f in report.files:
                files[f.path] = FileEntry(
                    path=f.path, size=f.size, digest=f.digest, ranks=[report.rank]
                )

        def component(
            name: str, kind: str, sharing: str, fmt: str, prefix: str, group_size: int | None = None
        ) -> Component:
            listed = [files[p] for p in sorted(files) if p == prefix or p.startswith(prefix + "/")]
            if (
                group_size is not None
            ):  # a group's file: its group, and every rank of it as contributor
                listed = [
                    f.model_copy(
                        update={
                            "group": f.ranks[0] // group_size,
                            "ranks": list(range(f.ranks[0], f.ranks[0] + group_size)),
                        }
                    )
                    for f in listed
                ]
            return Component(
                name=name,
                kind=kind,
                sharing=sharing,
                format=fmt,
                reshardable=sharing not in RANK_LOCAL_PATTERNS,
                group_size=group_size,
                step_count=request.step_counts.get(name),
                files=listed,
            )

        components = [component(n, k, "sharded", "dcp", n) for n, (k, _) in request.sharded.items()]
        components += [
            component(n, k, "replicated", "json", f"{n}.json")
            for n, (k, _) in request.replicated.items()
        ]
        components += [
            component(n, k, "per_rank", "torch_weights_only", n)
            for n, (k, _) in request.per_rank.items()
        ]
        components += [
            component(n, s.kind, s.sharing, "json", n, s.group_size)
            for n, s in request.grouped.items()
        ]
        replication = [
            ReplicationCheck(
                component=name,
                digests=[RankDigest(rank=r.rank, sha256=r.replica_digests[name]) for r in reports],
            )
            for name in request.replicated
        ]
        world = self.ctx.world_size
        return Manifest(
            spec_version=SPEC_VERSION,
            producer=PRODUCER,
            run_id=self.policy.run_id,
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


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, allow_nan=False).encode()
