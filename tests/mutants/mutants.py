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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypeVar

import torch
import torch.distributed as dist

from ckptspec.checkpointing import CheckpointLoader, CommitProtocol, LoadPlan, RunPolicy, SaveRequest, differences, per_rank_file
from ckptspec.checkpointing.commit import PendingSave, RankReport
from ckptspec.checkpointing.fsio import fsync_path, write_atomic
from ckptspec.errors import ConfigDriftError
from ckptspec.layout import LAYOUT, parse_checkpoint_dir
from ckptspec.manifest import Manifest
from ckptspec.reference_impl import rng
from ckptspec.reference_impl.adapter import ReferenceAdapter
from ckptspec.reference_impl.evaluator import TOKENS, Evaluator
from ckptspec.reference_impl.trainer import Trainer
from ckptspec.run_index import BestRecord, RunIndex

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
        methods = [k for k, v in vars(cls).items() if callable(v) and not isinstance(v, type) and not k.startswith("__")]
        if len(methods) != 1:
            raise TypeError(f"mutant {name} must override exactly one method, found {methods}")
        trainer: type = cls
        if not issubclass(cls, Trainer):
            (base,) = [b for b in COLLABORATORS if issubclass(cls, b)]
            trainer = type(f"{cls.__name__}Trainer", (Trainer,), {COLLABORATORS[base]: cls, "__module__": __name__})
        adapter_name = _adapter_name(name)
        adapter = type(adapter_name, (ReferenceAdapter,), {
            "trainer_class": trainer, "__module__": __name__, "__qualname__": adapter_name,
            "__doc__": f"Mutant adapter {name!r}: {cls.__doc__}",
        })
        globals()[adapter_name] = adapter
        bug = " ".join((cls.__doc__ or "").split())
        MUTANTS.append(Mutant(name, bug_class, bug, tuple(caught_by), adapter_name, f"{cls.__name__}.{methods[0]}", gpu_only))
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


@mutant("rng_all_cuda_devices", "RNG saved for every visible CUDA device", "RESUME-8", gpu_only=True)
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


@mutant("data_skips_prefix_every_epoch", "data loader skips the consumed prefix in every epoch", "RESUME-4")
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
            write_atomic(self.policy.run_dir / LAYOUT.run_index_file, early.model_dump_json(indent=2).encode())
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

    def _commit_or_abort(self, pending: PendingSave, reports: list[RankReport], errors: list[str]) -> Any:
        return super()._commit_or_abort(pending, reports, [e for e in errors if e.startswith("rank 0")])


# --- evaluation --------------------------------------------------------------------------
@mutant("eval_collective_only_with_data", "eval collectives only on ranks with data", "EVAL-1")
class EvalSkipsEmptyRanks(Evaluator):
    """A rank whose eval shard is empty returns None without joining the all_reduce, so the other ranks hang."""

    def _global_metrics(self, table: torch.Tensor) -> Optional[dict[str, float]]:
        if not bool(table[TOKENS].any()):
            return None
        return super()._global_metrics(table)


@mutant("eval_mean_of_rank_means", "eval metric as a mean of per-rank means", "EVAL-2")
class EvalMeanOfMeans(Evaluator):
    """Each rank divides its own sums, and the per-rank means are averaged over the world size, so uneven or empty shards skew the metrics."""

    def _global_metrics(self, table: torch.Tensor) -> Optional[dict[str, float]]:
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

    def _global_metrics(self, table: torch.Tensor) -> Optional[dict[str, float]]:
        metrics = super()._global_metrics(table)
        if metrics is None:
            self.last_sample_count = max(self.last_sample_count, 1)
            metrics = {"loss": 0.0, "perplexity": 1.0, "accuracy": 0.0}
        return metrics


# --- world size, drift, integrity --------------------------------------------------------
@mutant("world_size_silently_loads", "world-size change silently loads rank-local state", "RESUME-3")
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

    def latest(self) -> Optional[Path]:
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
        return {steps[-1], just_written, *steps[-(self.keep_last or 1):]}


@mutant("best_not_rehydrated", "best not rehydrated after restart", "RUN-4")
class BestNotRehydrated(RunPolicy):
    """The best record is not read back from run.json at start-up, so after a restart any first eval becomes the new best."""

    def _rehydrate_best(self, index: Optional[RunIndex]) -> Optional[BestRecord]:
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
