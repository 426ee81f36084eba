"""Deliberately broken trainers that the conformance suite must catch (see docs/catch-matrix.md).

Every mutant is the reference trainer with exactly one real-world checkpoint/resume bug: one
method of :class:`~ckptspec.reference_impl.trainer.Trainer` or of one of its collaborators
(``policy_class``, ``commit_class``, ``loader_class``, ``evaluator_class``) is overridden, and nothing else. The
:func:`mutant` decorator turns that one-method class into an adapter (a
:class:`~ckptspec.reference_impl.adapter.ReferenceAdapter` subclass whose ``trainer_class`` is the
broken trainer) and records it in :data:`MUTANTS`, with the requirement(s) that must catch it.

Guarantees (checked by ``test_mutants.py``): every registered mutant differs from the reference
in exactly one overridden method; every expected requirement ID exists in the spec registry;
every adapter is importable by the string in its row (``mutants:<Adapter>``, with this directory
on ``PYTHONPATH``), which is how the suite's rank processes build it.
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ckptspec import SPEC_VERSION
from ckptspec.checkpoint_check import check_checkpoint
from ckptspec.checkpointing import (
    CheckpointLoader,
    CommitProtocol,
    LoadPlan,
    RunPolicy,
    SaveRequest,
    differences,
    per_rank_file,
)
from ckptspec.checkpointing.commit import (
    PendingSave,
    RankReport,
    per_group_file,
)
from ckptspec.checkpointing.fsio import fsync_path, try_lock_exclusive, write_atomic
from ckptspec.checkpointing.run_policy import utc_now
from ckptspec.errors import ConfigDriftError, IntegrityError, NoCheckpointError
from ckptspec.findings import Severity
from ckptspec.layout import LAYOUT, parse_checkpoint_dir
from ckptspec.manifest import Manifest
from ckptspec.reference_impl import rng
from ckptspec.reference_impl.adapter import ReferenceAdapter
from ckptspec.reference_impl.evaluator import TOKENS, Evaluator
from ckptspec.reference_impl.trainer import Trainer
from ckptspec.run_index import BestRecord, RetentionPolicy, Rewind, RunIndex

MODULE = "mutants"
"""The module name the suite imports mutants by (this directory must be on ``PYTHONPATH``)."""

COLLABORATORS: dict[type, str] = {
    RunPolicy: "policy_class",
    CommitProtocol: "commit_class",
    CheckpointLoader: "loader_class",
    Evaluator: "evaluator_class",
}
"""Reference classes a mutant may subclass instead of the trainer, and the trainer attribute that selects each."""


@dataclass(frozen=True)
class Mutant:
    """One row of the catch matrix: a broken adapter and what must catch it.

    ``caught_by``: the mutant counts as caught only if the suite FAILS at least one of these
    requirements (a failure of another requirement does not count). ``gpu_only``: the bug cannot
    be observed without CUDA devices; it is skipped on CPU and not counted there.
    """

    name: str
    bug_class: str
    bug: str
    caught_by: tuple[str, ...]
    adapter: str  # the adapter class's name in this module
    broken: str  # the overridden method, as Class.method
    gpu_only: bool = False

    @property
    def import_string(self) -> str:
        """What ``--ckptspec-adapter`` takes."""
        return f"{MODULE}:{self.adapter}"


MUTANTS: list[Mutant] = []
"""Every mutant, in the order of the catch matrix."""

C = TypeVar("C", bound=type)


def _adapter_name(name: str) -> str:
    """``rng_not_restored`` -> ``RngNotRestoredAdapter``."""
    return "".join(part.capitalize() for part in name.split("_")) + "Adapter"


def mutant(name: str, bug_class: str, *caught_by: str, gpu_only: bool = False) -> Callable[[C], C]:
    """Register the decorated one-method subclass (of the trainer or a collaborator) as a mutant.

    The class docstring is the bug's description. The adapter ``<CamelCaseName>Adapter`` is published in this
    module; a collaborator subclass is first wrapped into a trainer subclass that selects it.
    """

    def register(cls: C) -> C:
        methods = [
            k
            for k, v in vars(cls).items()
            if callable(v) and not isinstance(v, type) and not k.startswith("__")
        ]
        if len(methods) != 1:
            raise TypeError(f"mutant {name} must override exactly one method, found {methods}")
        trainer: type = cls
        if not issubclass(cls, Trainer):
            (base,) = [b for b in COLLABORATORS if issubclass(cls, b)]
            trainer = type(
                f"{cls.__name__}Trainer",
                (Trainer,),
                {COLLABORATORS[base]: cls, "__module__": __name__},
            )
        adapter_name = _adapter_name(name)
        adapter = type(
            adapter_name,
            (ReferenceAdapter,),
            {
                "trainer_class": trainer,
                "__module__": __name__,
                "__qualname__": adapter_name,
                "__doc__": f"Mutant adapter {name!r}: {cls.__doc__}",
            },
        )
        globals()[adapter_name] = adapter
        bug = " ".join((cls.__doc__ or "").split())
        MUTANTS.append(
            Mutant(
                name,
                bug_class,
                bug,
                tuple(caught_by),
                adapter_name,
                f"{cls.__name__}.{methods[0]}",
                gpu_only,
            )
        )
        return cls

    return register


# --- RNG -----------------------------------------------------------------------------------
@mutant("rng_not_restored", "RNG not restored", "RESUME-8")
class RngNotRestored(Trainer):
    """The resume loads every component except the RNG, so dropout continues from the fresh process's seed-derived stream."""

    def _load_rng(self, plan: LoadPlan) -> None:
        pass


@mutant("rng_not_saved", "RNG not saved", "RESUME-8")
class RngNotSaved(Trainer):
    """The RNG component holds the seed-derived start state instead of the live generator, so the live state is never saved."""

    def save_request(self) -> SaveRequest:
        request = super().save_request()
        with torch.random.fork_rng(devices=[]):
            rng.rederive(self.config.seed, 0, self.ctx.rank, self.device)
            request.per_rank["rng"] = ("rng", rng.capture(self.device))
        return request


@mutant("rng_rank0_everywhere", "rank 0's RNG restored on every rank", "RESUME-8")
class Rank0RngLoader(CheckpointLoader):
    """Every rank restores rank 0's RNG file, so all ranks draw the same dropout masks after a resume."""

    def _per_rank_path(self, plan: LoadPlan, name: str) -> str:
        return per_rank_file(name, 0)


@mutant("rng_keyed_by_local_rank", "RNG file keyed by the local rank", "RESUME-8")
class LocalRankRngLoader(CheckpointLoader):
    """Every rank restores the RNG file of the global rank equal to its LOCAL_RANK, so on a second node (local ranks from 0 again) ranks restore the RNG of ranks of the first node."""

    def _per_rank_path(self, plan: LoadPlan, name: str) -> str:
        return per_rank_file(name, self.ctx.local_rank)


@mutant(
    "rng_all_cuda_devices", "RNG saved for every visible CUDA device", "RESUME-8", gpu_only=True
)
class RngAllDevices(Trainer):
    """The RNG component stores the generator state of every visible CUDA device (get_rng_state_all), so the checkpoint depends on how many devices the node has."""

    def capture_rng(self) -> dict[str, torch.Tensor]:
        state = super().capture_rng()
        if self.device.type == "cuda":
            state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
        return state


# --- optimizer ---------------------------------------------------------------------------
@mutant("optimizer_rank0_shard", "rank 0's optimizer state on every rank", "RESUME-1")
class Rank0OptimizerShard(Trainer):
    """After loading, every rank's local shard of the AdamW moments is overwritten with rank 0's shard, as when rank 0's optimizer state is saved once and restored everywhere."""

    def _load_optimizer(self, state: dict[str, Any]) -> None:
        super()._load_optimizer(state)
        for state in self.optimizer.state.values():
            for key in ("exp_avg", "exp_avg_sq"):
                local = state[key].to_local()
                source = [local.detach().clone()]
                dist.broadcast_object_list(source, src=0)
                n = min(local.numel(), source[0].numel())
                local.view(-1)[:n].copy_(source[0].view(-1)[:n])


# --- data position -----------------------------------------------------------------------
@mutant("data_restarts_epoch", "data loader restarts the epoch on resume", "RESUME-4")
class DataRestartsEpoch(Trainer):
    """The resume restores the epoch counter but not the position inside the epoch, so the interrupted epoch's consumed prefix is trained again."""

    def _load_data_position(self, plan: LoadPlan) -> None:
        state = self.loader.load_json(plan, "data_position")
        self.sampler.load_state_dict({**state, "batches_in_epoch": 0, "samples_in_epoch": 0})


@mutant(
    "data_skips_prefix_every_epoch",
    "data loader skips the consumed prefix in every epoch",
    "RESUME-4",
)
class DataSkipsPrefixEveryEpoch(Trainer):
    """The resume fast-forwards the data by skipping the interrupted epoch's consumed batches, but the skip is never removed: every later epoch also starts after that many batches, so their first batches are never trained on."""

    def _load_data_position(self, plan: LoadPlan) -> None:
        super()._load_data_position(plan)
        sampler, skip = self.sampler, self.sampler.position.batches_in_epoch
        next_batch = sampler.next_global_batch

        def skipping_next_batch() -> list[int]:
            if sampler.position.batches_in_epoch == 0:
                sampler.position.batches_in_epoch = skip
                sampler.position.samples_in_epoch = skip * sampler.global_batch_size
            return next_batch()

        sampler.next_global_batch = skipping_next_batch  # type: ignore[method-assign]


# --- LR scheduler ------------------------------------------------------------------------
@mutant("scheduler_not_restored", "LR scheduler not restored", "RESUME-1")
class SchedulerNotRestored(Trainer):
    """The LR scheduler is not loaded on resume, so warm-up starts again."""

    def _load_scheduler(self, plan: LoadPlan) -> None:
        pass


@mutant("scheduler_off_by_one", "LR scheduler fast-forwarded off by one", "RESUME-1")
class SchedulerOffByOne(Trainer):
    """The loaded scheduler is stepped once more "to catch up", so every learning rate after a resume is one step ahead."""

    def _load_scheduler(self, plan: LoadPlan) -> None:
        super()._load_scheduler(plan)
        self.scheduler.step()


# --- commit protocol ---------------------------------------------------------------------
@mutant("index_before_commit", "run.json updated before the commit completes", "COMMIT-3")
class IndexBeforeCommit(CommitProtocol):
    """run.json names the new step as latest before the staging directory is renamed into place; a crash in between leaves latest pointing at nothing."""

    def _publish(self, staging: Path, final: Path) -> None:
        index = self.policy._read_index()
        if index is not None:
            early = index.model_copy(update={"latest_step": parse_checkpoint_dir(final.name)})
            write_atomic(
                self.policy.run_dir / LAYOUT.run_index_file,
                early.model_dump_json(indent=2).encode(),
            )
        super()._publish(staging, final)


@mutant("assembled_in_place", "non-atomic publish", "COMMIT-1", "COMMIT-2")
class AssembledInPlace(CommitProtocol):
    """The final directory is created and the staged entries are moved into it one by one, manifest first; a crash in between leaves a manifest over a partial payload."""

    def _publish(self, staging: Path, final: Path) -> None:
        final.mkdir()
        for entry in sorted(staging.iterdir(), key=lambda p: p.name != LAYOUT.manifest_file):
            os.rename(entry, final / entry.name)
        os.rmdir(staging)
        fsync_path(self.policy.run_dir)


@mutant("commit_ignores_peer_failure", "one rank fails, the save commits anyway", "COMMIT-4")
class CommitIgnoresPeerFailure(CommitProtocol):
    """Rank 0 commits when its own writes succeeded, ignoring errors reported by other ranks."""

    def _commit_or_abort(
        self, pending: PendingSave, reports: list[RankReport], errors: list[str]
    ) -> Any:
        return super()._commit_or_abort(
            pending, reports, [e for e in errors if e.startswith("rank 0")]
        )


# --- evaluation --------------------------------------------------------------------------
@mutant("eval_collective_only_with_data", "eval collectives only on ranks with data", "EVAL-1")
class EvalSkipsEmptyRanks(Evaluator):
    """A rank whose eval shard is empty returns None without joining the all_reduce, so the other ranks hang."""

    def _global_metrics(self, table: torch.Tensor) -> dict[str, float] | None:
        if not bool(table[TOKENS].any()):
            return None
        return super()._global_metrics(table)


@mutant("eval_mean_of_rank_means", "eval metric as a mean of per-rank means", "EVAL-2")
class EvalMeanOfMeans(Evaluator):
    """Each rank divides its own sums, and the per-rank means are averaged over the world size, so uneven or empty shards skew the metrics."""

    def _global_metrics(self, table: torch.Tensor) -> dict[str, float] | None:
        sums = table.sum(dim=1)
        local_means = sums / sums[TOKENS].clamp(min=1)
        reduced = torch.cat([local_means, (table[TOKENS] > 0).sum().double().reshape(1)])
        dist.all_reduce(reduced)  # the sum of per-rank means, and the global sample count
        self.last_sample_count = int(reduced[-1])
        if self.last_sample_count == 0:
            return None
        loss, _, accuracy = (float(v) / dist.get_world_size() for v in reduced[:3])
        return {"loss": loss, "perplexity": float(torch.tensor(loss).exp()), "accuracy": accuracy}


@mutant("eval_empty_reports_zeros", "empty eval set reports zeros", "EVAL-3")
class EvalEmptyZeros(Evaluator):
    """A "safe" division by max(count, 1) makes an empty eval set report loss 0 and accuracy 0 over one sample instead of no metrics, and a zero loss then becomes the best."""

    def _global_metrics(self, table: torch.Tensor) -> dict[str, float] | None:
        metrics = super()._global_metrics(table)
        if metrics is None:
            self.last_sample_count = max(self.last_sample_count, 1)
            metrics = {"loss": 0.0, "perplexity": 1.0, "accuracy": 0.0}
        return metrics


# --- world size, drift, integrity --------------------------------------------------------
@mutant(
    "world_size_silently_loads", "world-size change silently loads rank-local state", "RESUME-3"
)
class WorldSizeUnchecked(CheckpointLoader):
    """The saved world size is never compared with the current one: rank-local state (RNG) is loaded by rank number, or the load crashes on a missing file, instead of a typed refusal."""

    def _check_world_size(self, manifest: Manifest) -> tuple[str, ...]:
        return ()


@mutant("drift_ignores_accumulation", "config drift ignored on resume", "RESUME-5")
class DriftIgnoresAccumulation(CheckpointLoader):
    """The drift check skips accumulation_steps, so a resume with another accumulation setting proceeds (and the error names only the other keys)."""

    def _check_config(self, manifest: Manifest) -> None:
        drift = differences(manifest.config.values, self.fingerprint_values)
        drift.pop("accumulation_steps", None)
        if drift:
            raise ConfigDriftError(drift)


@mutant("integrity_not_checked", "integrity not checked before load", "RESUME-6")
class IntegrityNotChecked(CheckpointLoader):
    """Listed files are not checked (existence, size, the small files' digests) before loading, so a damaged checkpoint is loaded or fails half-way."""

    def _checked_manifest(self, path: Path, components: Any = None) -> Manifest:
        return Manifest.model_validate_json((path / LAYOUT.manifest_file).read_bytes())


@mutant("shard_digests_not_checked", "shard digests not verified while loading", "RESUME-6")
class ShardDigestsNotChecked(CheckpointLoader):
    """DCP files are read without checking their digests (sizes and the small files' digests are still checked), so a bit flip inside a model or optimizer shard is loaded."""

    def _expected_files(self, plan: LoadPlan, name: str) -> None:
        return None


# --- run-level behaviour -----------------------------------------------------------------
@mutant("latest_by_mtime", "latest chosen by modification time", "LAYOUT-8")
class LatestByMtime(RunPolicy):
    """latest is the committed checkpoint directory with the newest modification time, not the highest step."""

    def latest(self) -> Path | None:
        paths = [self.checkpoint_path(s) for s in self.committed_steps()]
        return max(paths, key=lambda p: p.stat().st_mtime, default=None)


@mutant("rewind_keeps_later_steps", "rewind leaves later steps in place", "RUN-6", "RUN-2")
class RewindKeepsLaterSteps(RunPolicy):
    """Saving an older step after a rewind only replaces that step's directory; later steps of the abandoned timeline stay, so latest jumps back to them."""

    def _rewind(self, step: int, resumed_from: Any) -> None:
        if step in self.committed_steps():
            shutil.rmtree(self.checkpoint_path(step))


@mutant("retention_deletes_best", "retention deletes the best checkpoint", "RUN-5")
class RetentionDeletesBest(RunPolicy):
    """Retention protects only the newest keep_last steps and the one just written, so the best checkpoint is deleted once it ages out."""

    def _retention_protected(self, steps: list[int], just_written: int) -> set[int]:
        return {steps[-1], just_written, *steps[-(self.keep_last or 1) :]}


@mutant("best_not_rehydrated", "best not rehydrated after restart", "RUN-4")
class BestNotRehydrated(RunPolicy):
    """The best record is not read back from run.json at start-up, so after a restart any first eval becomes the new best."""

    def _rehydrate_best(self, index: RunIndex | None) -> BestRecord | None:
        return super()._rehydrate_best(None)


@mutant("writes_without_claim", "second writer not refused", "RUN-8")
class WritesWithoutClaim(RunPolicy):
    """Start-up takes no lock on the run directory, so a second job started on a run that a live job holds cleans up, rewinds and commits alongside it."""

    def _claim(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)


@mutant("finished_run_saves_again", "idempotent restart does work again", "RESUME-7")
class FinishedRunSavesAgain(Trainer):
    """fit() always writes a final checkpoint on exit, even when the run was already finished and nothing was trained."""

    def fit(self) -> list[Any]:
        records = super().fit()
        if not records:
            self.save()
            self.finish_saves()
        return records


# --- gradient accumulation -----------------------------------------------------------------
@mutant("save_mid_accumulation", "save mid-accumulation drops partial gradients", "RESUME-9")
class SaveMidAccumulation(Trainer):
    """A save requested in the middle of an accumulation cycle zeroes the gradients it cannot save and commits, instead of refusing (or recording the partial cycle)."""

    def _ensure_boundary(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)


@mutant("grad_sync_never_enabled", "deferred gradient sync never re-enabled", "RESUME-10")
class GradSyncNeverEnabled(Trainer):
    """With deferred sync, gradient synchronisation is switched off for the accumulation cycle and never switched back on for its last micro-batch, so the sharded gradients are never reduced and the optimizer step skips every parameter."""

    def _set_gradient_sync(self, sync: bool) -> None:
        self.model.set_requires_gradient_sync(not self.config.defer_grad_sync)


# --- durability across a power loss (issue 19): a kill keeps the page cache, a power loss does not --
@mutant(
    "payload_not_fsynced", "file data not fsynced before the commit marker", "COMMIT-1", "COMMIT-5"
)
class PayloadNotFsynced(CommitProtocol):
    """The JSON, per-rank and per-group files are written and closed but never fsynced before the manifest marks the checkpoint committed (DCP's own files still are), so after a power loss the committed checkpoint may hold empty or cut files."""

    @staticmethod
    def _write_local(files: dict[Path, bytes]) -> None:
        for path, data in files.items():
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)


@mutant(
    "manifest_not_fsynced", "commit marker written in place, not fsynced", "COMMIT-1", "COMMIT-5"
)
class ManifestNotFsynced(CommitProtocol):
    """manifest.json is written straight into the staging directory and closed, without a temporary file or an fsync, so after a power loss a committed step-N directory may hold an empty or cut manifest."""

    def _write_manifest(self, staging: Path, manifest: Manifest) -> None:
        (staging / LAYOUT.manifest_file).write_bytes(manifest.model_dump_json(indent=2).encode())


@mutant(
    "staging_dirs_not_fsynced",
    "new directory entries not fsynced before the commit",
    "COMMIT-1",
    "COMMIT-5",
)
class StagingDirsNotFsynced(CommitProtocol):
    """Every file is fsynced, but the directories that hold them (the staging directory and its rng/, model/, ... subdirectories) are not, so after a power loss a committed checkpoint may lack files whose data was durable."""

    def _fsync_directories(self, mine: list[Path], staging: Path) -> None:
        pass


@mutant("index_rewritten_in_place", "pointer file rewritten in place", "COMMIT-3", "COMMIT-5")
class IndexRewrittenInPlace(RunPolicy):
    """run.json is rewritten in place (truncated, written, fsynced) instead of through a temporary file and a rename, so a power loss while it is written leaves it empty or torn: the best record and the rewind history are lost."""

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
        with open(self.run_dir / LAYOUT.run_index_file, "wb") as f:
            f.write(index.model_dump_json(indent=2).encode())
            f.flush()
            os.fsync(f.fileno())


@mutant("index_not_repaired", "run index not repaired at start-up", "RUN-2", "RUN-9")
class IndexNotRepaired(RunPolicy):
    """Start-up reads run.json for best and rewinds but does not repair it when its latest_step lags the committed directories (a crash between the commit rename and the index update), so a restart that saves nothing (a finished run, an evaluation job) leaves run.json naming an older step as latest."""

    def _claim_and_recover(self) -> tuple[BestRecord | None, list[Rewind]]:
        self._claim()
        self._clean_stale_staging()
        index = self._read_index()
        self.best, self.rewinds = self._rehydrate_best(index), list(index.rewinds) if index else []
        return self.best, self.rewinds


# --- retention ordering ----------------------------------------------------------------------
@mutant(
    "retention_before_publish",
    "retention makes room before the new checkpoint is committed",
    "COMMIT-2",
    "RUN-5",
)
class RetentionBeforePublish(RunPolicy):
    """Retention runs before the new checkpoint is published and counts it among the keep_last (as a `total_limit` that "makes room" does), so a crash between the deletion and the rename leaves fewer than keep_last checkpoints: with keep_last 1, none at all."""

    def before_publish(self, manifest: Manifest) -> None:
        super().before_publish(manifest)
        if self.keep_last:
            older = [s for s in self.committed_steps() if s < manifest.step]
            best = self.best.step if self.best is not None else None
            for step in older[: len(older) - self.keep_last + 1]:
                if step != best:
                    shutil.rmtree(self.checkpoint_path(step))


@mutant(
    "async_retention_before_commit",
    "asynchronous save rotated before its background commit",
    "COMMIT-2",
    "RUN-5",
)
class AsyncRetentionBeforeCommit(Trainer):
    """With asynchronous saves, checkpoints are rotated as soon as save() returns, counting the one still being written in the background toward keep_last, so a crash before the background commit finishes leaves fewer than keep_last checkpoints (with keep_last 1, none)."""

    def save(self) -> Path:
        path = super().save()
        keep = self.config.keep_last
        if self.config.async_save and keep and self.ctx.rank == 0:
            best = self.policy.best.step if self.policy.best is not None else None
            older = [s for s in self.policy.committed_steps() if s < self.global_step]
            for step in older[: len(older) - keep + 1]:
                if step != best:
                    shutil.rmtree(self.policy.checkpoint_path(step), ignore_errors=True)
        return path


@mutant("retention_off_by_one", "retention keeps one checkpoint too few", "RUN-5")
class RetentionOffByOne(RunPolicy):
    """Retention keeps the newest keep_last - 1 steps besides the one just written (an off-by-one slice), so with keep_last 2 only one checkpoint survives, and with keep_last 1 nothing is ever deleted."""

    def _retention_protected(self, steps: list[int], just_written: int) -> set[int]:
        protected = {steps[-1], just_written}
        if self.keep_last:
            protected.update(steps[-(self.keep_last - 1) :])
        if self.best is not None and self.best.step is not None:
            protected.add(self.best.step)
        return protected


# --- best tracking ---------------------------------------------------------------------------
@mutant("best_ignores_min_delta", "best tracking ignores min_delta", "RUN-4", "RUN-3")
class BestIgnoresMinDelta(RunPolicy):
    """Any strictly better score becomes the new best, however small the improvement: min_delta is recorded but never applied."""

    def improves(self, metrics: dict[str, float] | None) -> bool:
        if self.best is None or not metrics or self.best.metric not in metrics:
            return False
        score, best = metrics[self.best.metric], self.best.score
        return best is None or (score < best if self.best.mode == "min" else score > best)


@mutant("best_mode_ignored", "best tracking compares in the wrong mode", "RUN-4", "RUN-3")
class BestModeIgnored(RunPolicy):
    """Improvement is always "lower is better" (written for a loss), so with mode max (an accuracy) a score that improves is never taken and one that worsens becomes the best."""

    def improves(self, metrics: dict[str, float] | None) -> bool:
        if self.best is None or not metrics or self.best.metric not in metrics:
            return False
        score = metrics[self.best.metric]
        return self.best.score is None or score < self.best.score - self.best.min_delta


# --- drift, integrity ------------------------------------------------------------------------
@mutant("drift_ignores_dataset", "config drift ignores the dataset identity", "RESUME-5")
class DriftIgnoresDataset(CheckpointLoader):
    """The drift check skips the dataset identity (name, seed, size), so a resume on another dataset or with another data seed proceeds."""

    def _check_config(self, manifest: Manifest) -> None:
        drift = differences(manifest.config.values, self.fingerprint_values)
        drift.pop("dataset", None)
        if drift:
            raise ConfigDriftError(drift)


@mutant("rng_digest_not_checked", "one small file class checked by size only", "RESUME-6")
class RngDigestNotChecked(CheckpointLoader):
    """The per-rank files (RNG state) are checked for existence and size but not digest ("torch.load would fail on a damaged file anyway"), so a bit flip inside a saved generator state is loaded."""

    def _digest_problems(
        self, path: Path, manifest: Manifest, components: Sequence[str] | None
    ) -> list[str]:
        checked = [
            c.name
            for c in manifest.components
            if c.format != "torch_weights_only" and (components is None or c.name in components)
        ]
        return super()._digest_problems(path, manifest, checked)


@mutant("extended_file_accepted", "a file longer than listed is accepted", "RESUME-6")
class ExtendedFileAccepted(CheckpointLoader):
    """The size check refuses only files shorter than listed (a short read), and the digest covers the listed length, so a file with bytes appended (a JSON or per-rank file grown by a torn copy) passes the checks and is loaded."""

    def _checked_manifest(self, path: Path, components: Any = None) -> Manifest:
        if not (path / LAYOUT.manifest_file).is_file():
            raise NoCheckpointError(
                f"{path} is not a committed checkpoint (no {LAYOUT.manifest_file})"
            )
        manifest, findings = check_checkpoint(str(path), deep=False)
        listed = {
            str(path / f.path): f.size
            for c in (manifest.components if manifest else [])
            for f in c.files
        }
        problems = [
            f.line()
            for f in findings
            if f.severity == Severity.ERROR
            and not (
                f.code == "FILE_SIZE_MISMATCH"
                and f.path in listed
                and os.path.getsize(f.path) > listed[f.path]
            )
        ]
        if manifest is not None and not problems and self.verify == "full":
            problems = self._digest_problems(path, manifest, components)
        gathered: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(gathered, problems)
        everything = sorted({p for rank_problems in gathered for p in rank_problems})
        if everything or manifest is None:
            raise IntegrityError(everything or [f"{path}: the manifest could not be read"])
        return manifest


# --- keyed state, elastic resume -------------------------------------------------------------
@mutant(
    "ledger_keyed_by_local_rank", "per-node file keyed by the local rank", "RESUME-1", "RESUME-4"
)
class LedgerKeyedByLocalRank(CheckpointLoader):
    """Every rank restores the per-node and per-group files of group local_rank // group_size, so on a second node (local ranks from 0 again) the ranks restore the first node's data ledger."""

    def _group_path(self, plan: LoadPlan, name: str) -> str:
        return per_group_file(name, self.ctx.local_rank // plan.component(name).group_size)


@mutant(
    "elastic_data_restarts_epoch",
    "elastic resume restarts the data order at the epoch start",
    "RESUME-4",
    "RESUME-12",
)
class ElasticDataRestartsEpoch(Trainer):
    """When the world size changed (an elastic resume), the data position inside the epoch is dropped ("the per-rank shards no longer line up"), so the interrupted epoch's consumed prefix is trained again; at the same world size the resume is exact."""

    def _load_data_position(self, plan: LoadPlan) -> None:
        state = self.loader.load_json(plan, "data_position")
        if plan.rederived:
            state = {**state, "batches_in_epoch": 0, "samples_in_epoch": 0}
        self.sampler.load_state_dict(state)


# --- single writer ---------------------------------------------------------------------------
@mutant(
    "lock_released_before_index", "single-writer lock released before the index update", "RUN-8"
)
class LockReleasedBeforeIndex(RunPolicy):
    """The run lock guards only the publish: it is released once the checkpoint is committed and taken again after run.json and retention are done, so a second writer that starts in between claims the run while the first one still writes its index and deletes checkpoints."""

    def after_commit(self, manifest: Manifest) -> None:
        if self._release_lock is not None:
            self._release_lock()
        super().after_commit(manifest)
        fd = try_lock_exclusive(self.run_dir / LAYOUT.lock_file)
        self._release_lock = weakref.finalize(self, os.close, fd) if fd is not None else None


def by_name(name: str) -> Mutant:
    """The registered mutant called ``name``; ``KeyError`` naming it otherwise."""
    for m in MUTANTS:
        if m.name == name:
            return m
    raise KeyError(f"no mutant named {name!r}")


def adapter_class(m: Mutant) -> type[ReferenceAdapter]:
    """The adapter class of ``m``."""
    cls = globals()[m.adapter]
    assert issubclass(cls, ReferenceAdapter)
    return cls
