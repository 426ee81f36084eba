"""The library's front door: :class:`Checkpointer`, one object per rank that saves, finds and
resumes the checkpoints of one run.

A trainer builds it from where its rank runs (:class:`DistContext`), its run directory, the
settings that must not drift and its run policy (best, retention); names its state once as
components (:class:`Sharded`, :class:`Replicated`, :class:`PerRank`, :class:`Grouped`); and
calls :meth:`Checkpointer.save`, :meth:`Checkpointer.resume` and :meth:`Checkpointer.close`.

The resume sequence lives here and only here: discovery of the latest committed checkpoint,
every pre-load check (:meth:`CheckpointLoader.plan`: integrity, config drift, world size), then
every component read, and every file verified on every rank, before any live state changes
(RESUME-6). The parts (:class:`RunPolicy`, :class:`CommitProtocol`, :class:`CheckpointLoader`,
:class:`SaveRequest`) stay public; their classes are arguments, so a subclass that changes one
behaviour is the one the whole sequence uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ckptspec.checkpointing.commit import CommitProtocol, GroupState, SaveRequest
from ckptspec.checkpointing.distributed import DistContext
from ckptspec.checkpointing.fingerprint import fingerprint
from ckptspec.checkpointing.loader import CheckpointLoader, LoadPlan
from ckptspec.checkpointing.run_policy import BestPolicy, RunPolicy
from ckptspec.file_digest import DEFAULT_ALGORITHM
from ckptspec.manifest import EvalResult, Progress, ResumeRecord


@dataclass(frozen=True)
class Sharded:
    """A component saved with ``torch.distributed.checkpoint``: reshardable, loadable at any world
    size. ``get()`` returns its state dict, referencing live tensors; ``set(state_dict)`` installs
    what a resume read, called only once every component was read and verified. ``kind``: the
    manifest's kind (default: the component's name)."""

    get: Callable[[], dict[str, Any]]
    set: Callable[[dict[str, Any]], None]
    kind: str | None = None


@dataclass(frozen=True)
class Replicated:
    """A JSON value identical on every rank (rank 0 writes it; a save whose ranks disagree is not
    committed)."""

    get: Callable[[], Any]
    set: Callable[[Any], None]
    kind: str | None = None


@dataclass(frozen=True)
class PerRank:
    """A mapping of tensors that belongs to one rank (one ``torch.load(weights_only=True)`` file per
    rank). At another world size a resume refuses it (RESUME-3) or, with ``elastic``, calls
    ``rederive(step)`` (the checkpoint's step) instead of ``set``."""

    get: Callable[[], dict[str, torch.Tensor]]
    set: Callable[[dict[str, torch.Tensor]], None]
    rederive: Callable[[int], None] | None = None
    kind: str | None = None


@dataclass(frozen=True)
class Grouped:
    """A JSON value shared by ``group_size`` consecutive ranks: ``sharing`` ``per_node`` (the ranks
    of one node) or ``per_group``. Re-derived like :class:`PerRank` at another world size or group size."""

    get: Callable[[], Any]
    set: Callable[[Any], None]
    sharing: str
    group_size: int
    rederive: Callable[[int], None] | None = None
    kind: str | None = None


Component = Sharded | Replicated | PerRank | Grouped
"""One named part of a trainer's state, as a :class:`Checkpointer` saves and restores it."""


def model_component(model: torch.nn.Module) -> Sharded:
    """``model``'s parameters and buffers (DDP, FSDP2 or a plain module), through torch's
    ``get_model_state_dict`` / ``set_model_state_dict``."""
    return Sharded(
        lambda: get_model_state_dict(model),
        lambda state: set_model_state_dict(model, state),
        kind="model",
    )


def optimizer_component(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Sharded:
    """``optimizer``'s state keyed by parameter name, through torch's ``get_optimizer_state_dict``
    / ``set_optimizer_state_dict``."""
    return Sharded(
        lambda: get_optimizer_state_dict(model, optimizer),
        lambda state: set_optimizer_state_dict(model, optimizer, state),
        kind="optimizer",
    )


class Checkpointer:
    """Saves, finds and resumes the checkpoints of one run, for one rank of its process group.

    ``config``: the settings that must not change across a resume (the manifest's fingerprint;
    MANIFEST-9 names the keys it must hold). ``best`` and ``keep_last``: the run policy.
    ``elastic``, ``verify``, ``group_sizes``: as :class:`CheckpointLoader` takes them;
    ``digest_algorithm`` and ``async_groups`` as :class:`CommitProtocol` takes them (process groups
    missing there are created at the first asynchronous save). ``policy_class``, ``commit_class``,
    ``loader_class``: the parts it is built from. Construction does no I/O and no collective.

    Methods marked *collective* must be called on every rank in the same order.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        ctx: DistContext,
        config: dict[str, Any],
        *,
        run_id: str | None = None,
        best: BestPolicy | None = None,
        keep_last: int | None = None,
        elastic: bool = False,
        verify: str = "full",
        group_sizes: Mapping[str, int] | None = None,
        digest_algorithm: str = DEFAULT_ALGORITHM,
        async_groups: dict[str, dist.ProcessGroup] | None = None,
        policy_class: type[RunPolicy] = RunPolicy,
        commit_class: type[CommitProtocol] = CommitProtocol,
        loader_class: type[CheckpointLoader] = CheckpointLoader,
    ) -> None:
        run_dir = Path(run_dir)
        self.config = config
        self.policy = policy_class(
            run_dir, run_id or run_dir.name, ctx, keep_last=keep_last, best=best
        )
        self.commit = commit_class(
            self.policy, async_groups=async_groups, digest_algorithm=digest_algorithm
        )
        self.loader = loader_class(
            ctx, config, elastic=elastic, verify=verify, group_sizes=group_sizes
        )
        self.resumed_from: ResumeRecord | None = None
        """The checkpoint this run resumed from (recorded in every manifest written after it)."""

    # ------------------------------------------------------------------ save
    def save(
        self,
        step: int,
        state: Mapping[str, Component],
        *,
        progress: Progress,
        eval: EvalResult | None = None,
        step_counts: Mapping[str, int] | None = None,
        async_save: bool = False,
    ) -> Path:
        """*Collective.* Checkpoint ``state`` as step ``step``; return the checkpoint's directory.

        Synchronous: the checkpoint is committed when this returns, or :class:`SaveError` is
        raised on every rank and nothing is committed. ``async_save``: returns once the state is
        copied to host memory; the checkpoint is committed by :meth:`wait`, the next save,
        :meth:`resume` or :meth:`close`. ``step_counts``: a sharded optimizer's own step count,
        recorded in the manifest (MANIFEST-12).
        """
        return self.write(
            self.request(step, state, progress=progress, eval=eval, step_counts=step_counts),
            async_save=async_save,
        )

    def request(
        self,
        step: int,
        state: Mapping[str, Component],
        *,
        progress: Progress,
        eval: EvalResult | None = None,
        step_counts: Mapping[str, int] | None = None,
    ) -> SaveRequest:
        """This rank's :class:`SaveRequest` for ``state`` at ``step`` (state dicts reference live state)."""
        if progress.global_step != step:
            raise ValueError(
                f"progress.global_step is {progress.global_step}, but the checkpoint is of step {step}"
            )
        parts: dict[type, dict[str, Any]] = {Sharded: {}, Replicated: {}, PerRank: {}, Grouped: {}}
        for name, component in state.items():
            if type(component) not in parts:
                raise TypeError(
                    f"component {name!r} is a {type(component).__name__}, not Sharded, Replicated, PerRank or Grouped"
                )
            kind = component.kind or name
            value = component.get()
            parts[type(component)][name] = (
                GroupState(kind, component.sharing, component.group_size, value)
                if isinstance(component, Grouped)
                else (kind, value)
            )
        return SaveRequest(
            progress=progress,
            config=fingerprint(self.config),
            sharded=parts[Sharded],
            replicated=parts[Replicated],
            per_rank=parts[PerRank],
            grouped=parts[Grouped],
            step_counts=dict(step_counts or {}),
            eval=eval,
            resumed_from=self.resumed_from,
        )

    def write(self, request: SaveRequest, *, async_save: bool = False) -> Path:
        """*Collective.* Write and commit a prepared :class:`SaveRequest`, like :meth:`save`."""
        if not async_save:
            return self.commit.save(request)
        groups = self.commit.async_groups
        for name in (*request.sharded, "commit"):
            if name not in groups:  # every rank lacks the same groups: the creation is collective
                groups[name] = dist.new_group(backend="gloo")
        self.commit.save_async(request)
        return self.policy.checkpoint_path(request.step)

    def wait(self) -> Path | None:
        """*Collective.* Commit the asynchronous save in flight, if any; return its directory."""
        return self.commit.wait() if self.commit.save_in_progress else None

    # ------------------------------------------------------------------ resume
    def resume(
        self,
        state: Mapping[str, Component],
        checkpoint: str | os.PathLike[str] | None = None,
        *,
        restore: Callable[[LoadPlan], None] | None = None,
        required: Sequence[str] = (),
    ) -> int | None:
        """*Collective.* Restore ``state`` from ``checkpoint``, or from the run's latest committed
        checkpoint; return its step, or None (nothing changed) when the run has none.

        First claims the run (:meth:`RunPolicy.startup`) and commits a save in flight. Every
        check runs before any live state changes, and raises the same typed
        :class:`~ckptspec.errors.CheckpointError` on every rank: the checkpoint's integrity, config
        drift, world size (rank-local components refused, or re-derived with ``elastic``), and
        that it holds every component of ``state`` and of ``required``. Then every component is
        read, each sharded file's digest verified as it is read and agreed by every rank, and only
        then applied (RESUME-6). ``restore(plan)``, if given, runs last: for state the trainer
        restores itself from the verified :class:`LoadPlan` (through :attr:`loader`).
        """
        self.wait()
        self.policy.startup()
        path = Path(checkpoint) if checkpoint is not None else self.policy.latest()
        if path is None:
            return None
        self.loader.group_sizes.update(
            {n: c.group_size for n, c in state.items() if isinstance(c, Grouped)}
        )
        plan = self.loader.plan(path, required=(*state, *required))
        self.load(plan, state)
        if restore is not None:
            restore(plan)
        self.resumed_from = ResumeRecord(
            step=plan.manifest.step,
            world_size=plan.manifest.topology.world_size,
            elastic=bool(plan.rederived),
            rederived=list(plan.rederived),
        )
        return plan.manifest.step

    def load(self, plan: LoadPlan, state: Mapping[str, Component]) -> None:
        """*Collective.* Read every component of ``state`` from the checked ``plan``, then apply them
        all: no live state changes unless every one was read and verified on every rank."""
        rederived = {name: state[name] for name in plan.rederived if name in state}
        lacking = sorted(
            name
            for name, component in rederived.items()
            if getattr(component, "rederive", None) is None
        )
        if lacking:
            raise ValueError(
                f"an elastic resume from {plan.path} must re-derive {', '.join(lacking)}, which has no rederive()"
            )
        sharded = {name: c for name, c in state.items() if isinstance(c, Sharded)}
        targets = {name: c.get() for name, c in sharded.items()}
        staged = [self.loader.read_sharded(plan, name, target) for name, target in targets.items()]
        values = {
            name: self._read(plan, name, c)
            for name, c in state.items()
            if not isinstance(c, Sharded) and name not in rederived
        }
        # every component was read, and every file verified on every rank: live state changes from here on (RESUME-6)
        for read in staged:
            read.apply()
        for name, component in sharded.items():
            component.set(targets[name])
        for name, value in values.items():
            state[name].set(value)
        for component in rederived.values():
            component.rederive(plan.manifest.step)  # type: ignore[union-attr]

    def _read(self, plan: LoadPlan, name: str, component: Component) -> Any:
        if isinstance(component, Replicated):
            return self.loader.load_json(plan, name)
        if isinstance(component, PerRank):
            return self.loader.load_per_rank(plan, name)
        if isinstance(component, Grouped):
            return self.loader.load_group(plan, name)
        raise TypeError(
            f"component {name!r} is a {type(component).__name__}, not Sharded, Replicated, PerRank or Grouped"
        )

    # ------------------------------------------------------------------ end
    def close(self) -> None:
        """*Collective.* Commit the save in flight, if any, and release the claim on the run
        directory (:meth:`RunPolicy.close`); :meth:`save` or :meth:`resume` claims it again."""
        try:
            self.wait()
        finally:
            self.policy.close()
