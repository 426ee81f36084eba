"""The run-level policy of a writer: its claim on the run, best, retention, rewind and ``run.json``.

A :class:`RunPolicy` owns everything about a run directory that is not one checkpoint:

- **single writer (RUN-8)**: :meth:`RunPolicy.startup` has rank 0 take an exclusive ``flock`` on
  the run's lock file and hold it until :meth:`RunPolicy.close` or the process dies; a second
  writer is refused on every rank with :class:`~ckptspec.errors.RunLockedError` before anything
  in the run directory is modified. Stale staging directories are removed only under the lock;
  any other failure of start-up on rank 0 is broadcast and raised on every rank as
  :class:`RunStartupError`, so no rank waits in a collective;
- **discovery**: the committed steps and ``latest`` (LAYOUT-8, through :mod:`ckptspec.layout`);
- **best (RUN-3, RUN-4)**: tracked by a metric, mode and min-delta, rehydrated from ``run.json``
  at start-up and agreed by every rank;
- **rewind (RUN-6)**: saving a step at or below committed steps moves those aside to
  ``.rewound/<fork id>/`` and records the fork;
- **retention (RUN-5)**: keep the newest ``keep_last``; never latest, best or the checkpoint just
  written; a failed deletion is a warning;
- **the index**: ``run.json`` rewritten atomically after every commit, repaired at start-up when
  it lags behind the directories (which are the truth).

The commit protocol (:mod:`ckptspec.checkpointing.commit`) calls :meth:`RunPolicy.before_publish`
and :meth:`RunPolicy.after_commit` on rank 0. Each behaviour is one small method, so that a
single behaviour can be changed in a subclass (the conformance suite's mutants do that).
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch.distributed as dist

from ckptspec import SPEC_VERSION
from ckptspec.checkpointing.distributed import DistContext
from ckptspec.checkpointing.fsio import fsync_path, try_lock_exclusive, write_atomic
from ckptspec.documents import load_run_index
from ckptspec.errors import RunLockedError, RunStartupError
from ckptspec.layout import LAYOUT, checkpoint_dir_name, committed_steps, is_staging_dir
from ckptspec.manifest import EvalResult, Manifest, ResumeRecord
from ckptspec.run_index import BestRecord, RetentionPolicy, Rewind, RunIndex


def utc_now() -> str:
    """The current time as an RFC 3339 UTC timestamp with milliseconds."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class CommittedWithWarning(UserWarning):
    """A checkpoint was committed, but updating ``run.json`` after the commit failed; the next
    save or start-up repairs it."""


@dataclass(frozen=True)
class BestPolicy:
    """How the best checkpoint is chosen."""

    metric: str
    mode: Literal["max", "min"] = "min"
    min_delta: float = 0.0


class RunPolicy:
    """The claim on, and the run-level state of, one run directory.

    :meth:`startup` is collective; discovery reads the directory and needs no collective; the
    other mutating methods run on rank 0 only, inside the commit protocol.
    """

    def __init__(
        self,
        run_dir: Path,
        run_id: str,
        ctx: DistContext,
        *,
        keep_last: int | None = None,
        best: BestPolicy | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.ctx = ctx
        self.keep_last = keep_last
        self.best_policy = best
        self.best: BestRecord | None = None
        self.rewinds: list[Rewind] = []
        self.started = False
        self._release_lock: weakref.finalize | None = (
            None  # rank 0: closes the descriptor holding the run's flock
        )

    # ------------------------------------------------------------------ discovery
    def checkpoint_path(self, step: int) -> Path:
        """Where the checkpoint of ``step`` is (or would be) committed."""
        return self.run_dir / checkpoint_dir_name(step)

    def committed_steps(self) -> list[int]:
        """Steps of the committed checkpoints, ascending (LAYOUT-8)."""
        return committed_steps(self.run_dir)

    def latest(self) -> Path | None:
        """The committed checkpoint with the highest step, or None."""
        steps = self.committed_steps()
        return self.checkpoint_path(steps[-1]) if steps else None

    # ------------------------------------------------------------------ claim and start-up
    def startup(self) -> None:
        """*Collective.* Claim the run directory for this writer (RUN-8), then remove stale staging
        directories, rehydrate best and the rewind history from ``run.json`` and repair a
        ``run.json`` whose ``latest_step`` lags behind the committed directories (rank 0 acts,
        then broadcasts).

        Raises, on every rank alike (no rank is left waiting in the broadcast):
        :class:`RunLockedError`, having modified nothing in the run directory, when another
        writer holds it or the claim cannot be taken; :class:`RunStartupError` when anything else
        fails on rank 0 after the claim (reading ``run.json``, listing or cleaning the directory),
        the claim then being released.
        """
        if self.started:
            return
        state: list[Any] = [None]
        failure: Exception | None = None  # rank 0's own error, chained to what it raises
        if self.ctx.rank == 0:
            try:
                state[0] = (None, None, *self._claim_and_recover())
            except RunLockedError as exc:
                state[0] = ("locked", exc.detail, None, [])
            except Exception as exc:  # noqa: BLE001 - any failure must reach every rank, not strand them in the collective
                failure = exc
                self.close()
                state[0] = ("failed", f"{type(exc).__name__}: {exc}", None, [])
        dist.broadcast_object_list(state, src=0)
        outcome, detail, self.best, self.rewinds = state[0]
        if outcome == "locked":
            raise RunLockedError(str(self.run_dir), detail)
        if outcome == "failed":
            raise RunStartupError(str(self.run_dir), detail) from failure
        self.started = True

    def _claim(self) -> None:
        """Rank 0: take the exclusive ``flock`` on the run's lock file (creating the run directory
        and the empty lock file if needed), held until :meth:`close` or the process's death.

        Raises :class:`RunLockedError` when another writer holds it or it cannot be taken.
        """
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunLockedError(
                str(self.run_dir), f"cannot create the run directory: {exc}"
            ) from None
        try:
            fd = try_lock_exclusive(self.run_dir / LAYOUT.lock_file)
        except OSError as exc:  # no lock support (some network file systems) is a refusal too
            raise RunLockedError(
                str(self.run_dir), f"cannot lock {LAYOUT.lock_file}: {exc}"
            ) from None
        if fd is None:
            raise RunLockedError(
                str(self.run_dir), f"another writer holds the lock on {LAYOUT.lock_file}"
            )
        self._release_lock = weakref.finalize(
            self, os.close, fd
        )  # at close(), or when the policy is collected

    def _claim_and_recover(self) -> tuple[BestRecord | None, list[Rewind]]:
        """Rank 0: take the run's lock, then (and only then) clean up and read the index."""
        self._claim()
        self._clean_stale_staging()
        index = self._read_index()
        self.best, self.rewinds = self._rehydrate_best(index), list(index.rewinds) if index else []
        steps = self.committed_steps()
        if (index.latest_step if index else None) != (steps[-1] if steps else None):
            self._write_index_or_warn(
                "at start-up, its latest_step lags the committed checkpoints, and"
            )
        return self.best, self.rewinds

    def close(self) -> None:
        """Release this writer's claim on the run directory; so do the policy's garbage
        collection and the process's death. :meth:`startup` claims the run again."""
        if self._release_lock is not None:
            self._release_lock()
            self._release_lock = None
        self.started = False

    def _clean_stale_staging(self) -> None:
        """Delete in-flight saves left behind by a crashed writer (rank 0, at start-up, holding
        the run's lock: no live writer owns them)."""
        for entry in self.run_dir.iterdir():
            if is_staging_dir(entry.name):
                shutil.rmtree(entry, ignore_errors=True)

    def _read_index(self) -> RunIndex | None:
        """The run index, read like the validator reads it; None (with a warning) when it is
        missing or unusable: it is rebuilt from the checkpoints."""
        path = self.run_dir / LAYOUT.run_index_file
        if not path.is_file():
            return None
        index, problems = load_run_index(str(path))
        if index is None:
            warnings.warn(
                f"{path} is not a valid run index ({problems[0].line()}); rebuilding it from the checkpoints"
            )
        return index

    def _rehydrate_best(self, index: RunIndex | None) -> BestRecord | None:
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
    def improves(self, metrics: dict[str, float] | None) -> bool:
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

    def _update_best(self, step: int, eval_result: EvalResult | None) -> None:
        if eval_result is not None and self.improves(eval_result.metrics):
            assert self.best is not None
            self.best = self.best.model_copy(
                update={"step": step, "score": eval_result.metrics[self.best.metric]}
            )

    # ------------------------------------------------------------------ around a commit (rank 0)
    def before_publish(self, manifest: Manifest) -> None:
        """Rank 0, before the checkpoint of ``manifest`` is published: fork the timeline if the
        run already holds this or later steps (RUN-6)."""
        self._rewind(manifest.step, manifest.resumed_from)

    def after_commit(self, manifest: Manifest) -> None:
        """Rank 0, once the checkpoint of ``manifest`` is committed: update best and the index;
        apply retention only when that succeeded. A failure here is a warning, never an error."""
        self._update_best(manifest.step, manifest.eval)
        if self._write_index_or_warn(f"step {manifest.step} is committed, but"):
            self._apply_retention(just_written=manifest.step)

    def _rewind(self, step: int, resumed_from: ResumeRecord | None) -> None:
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
        for directory in (target, target.parent, self.run_dir):  # the fork's entry in .rewound/ too
            fsync_path(directory)
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

    # ------------------------------------------------------------------ the index (rank 0)
    def _write_index_or_warn(self, context: str) -> bool:
        """Rewrite the index; on failure issue a :class:`CommittedWithWarning` naming ``context``.
        Returns whether the index was written."""
        try:
            self._write_index()
        except OSError as exc:
            warnings.warn(
                f"{context} {LAYOUT.run_index_file} could not be updated ({exc}); "
                "it is repaired by the next save or start-up",
                CommittedWithWarning,
                stacklevel=2,
            )
            return False
        return True

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
