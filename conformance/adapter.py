"""The adapter protocol: the whole surface the conformance suite needs from a trainer.

The suite builds one adapter inside every rank process of every phase, from an import string
``module:object`` (a class, or a factory callable with the same signature). Before building
it, the suite has already initialised the default ``torch.distributed`` process group (gloo on
CPU, NCCL on CUDA) from the elastic launcher's environment; the adapter uses that group and
must not create or destroy the default group itself.

Every method marked *collective* is called on all ranks, in the same order. The suite computes
every digest and comparison itself (with :mod:`ckptspec.digest`); adapters only expose state.

An adapter subclasses :class:`TrainerAdapter`, whose class-level declarations have typed
defaults: ``capabilities``, ``eval_set_size``, ``checkpoint_format``, ``refusal_errors``,
``framework``, ``saves_at_step_ends_only``, ``restore_on_first_batch``, ``eval_sharding``, the
``committed_checkpoints`` discovery hook and the ``best_checkpoint`` hook. A trainer that owns its
loop (``trainer.train()``, ``trainer.fit()``) subclasses
:class:`ckptspec.conformance.owner_loop.OwnerLoopAdapter` instead, which subclasses this one. The suite reads them only
through :func:`declarations`, which also accepts an older adapter that does not subclass
:class:`TrainerAdapter` (protocol v1 or v2): what it does not declare takes the base class's default.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from ckptspec.file_digest import ALGORITHMS
from ckptspec.layout import LAYOUT, checkpoint_dir_name, committed_steps
from ckptspec.training import StepRecord

Capability = Literal[
    "reshard",
    "elastic",
    "eval",
    "accumulation",
    "micro_steps",
    "grad_sync",
    "epochs",
    "best",
    "retention",
    "multi_node",
    "async_save",
]

CAPABILITIES: tuple[Capability, ...] = get_args(Capability)
"""Every capability an adapter may declare. A test that needs an undeclared one is skipped.

- ``reshard``: sharded state (model, optimizer) loads at a different world size.
- ``elastic``: with ``ScenarioConfig.elastic``, rank-local state is re-derived on a world-size
  change instead of failing, and the next manifest records it.
- ``eval``: :meth:`TrainerAdapter.evaluate` is implemented.
- ``accumulation``: ``accumulation_steps > 1`` is supported.
- ``micro_steps``: :meth:`TrainerAdapter.train_micro` is implemented, so the suite can ask for a
  save in the middle of an accumulation cycle (RESUME-9).
- ``grad_sync``: with ``ScenarioConfig.defer_grad_sync`` False, gradients are synchronised on
  every micro-batch instead of only the last one of each optimizer step (RESUME-10).
- ``epochs``: with ``ScenarioConfig.steps_per_epoch``, the training set holds exactly
  ``steps_per_epoch * global_batch_size`` samples (ids ``0..n-1``) and every epoch visits each
  of them once, so the suite can resume across epoch boundaries.
- ``best``: best-checkpoint tracking by ``best_metric`` is implemented.
- ``retention``: ``keep_last`` is implemented.
- ``multi_node``: the trainer runs on several nodes of one job (several elastic agents, each with
  its own ``LOCAL_RANK`` space; :attr:`RankContext.local_world_size` ranks per node), so the suite
  can launch a scenario as two nodes on localhost.
- ``async_save``: with ``ScenarioConfig.async_save``, the trainer writes its checkpoints in the
  background (the state copied to host memory, then written, agreed and committed on another
  thread): :meth:`TrainerAdapter.save` still returns only once the checkpoint is committed, and
  ``fit()``'s saves overlap training. The suite then crosses synchronous and asynchronous saves.
"""


EvalSharding = Literal["suite", "framework"]

EVAL_SHARDINGS: tuple[EvalSharding, ...] = get_args(EvalSharding)
"""The values of an adapter's ``eval_sharding``: ``"suite"`` (:meth:`TrainerAdapter.evaluate`
evaluates the shard the suite gives this rank; the default) or ``"framework"`` (the framework
shards the eval set itself: the adapter evaluates the union of every rank's ids, in rank order,
through the framework's own sampler, so an empty or uneven split still reaches the framework;
:class:`ckptspec.conformance.owner_loop.OwnerLoopAdapter` gathers the ids and calls its
``evaluate_global``)."""

CheckpointFormat = Literal["ckptspec", "native"]

CHECKPOINT_FORMATS: tuple[CheckpointFormat, ...] = get_args(CheckpointFormat)
"""The values of an adapter's ``checkpoint_format``: ``"ckptspec"`` (the trainer writes ckptspec's
layout and manifest; the default) or ``"native"`` (the framework's own format: the ckptspec-writer
requirements do not apply to it, see :mod:`ckptspec.conformance.checks`)."""


@dataclass(frozen=True)
class RankContext:
    """Where this adapter instance runs."""

    rank: int
    world_size: int
    local_rank: int
    device: str  # "cpu" or "cuda:<local_rank>"
    local_world_size: int = 1  # ranks on this rank's node; global ranks of a node are consecutive


@dataclass(frozen=True)
class ScenarioConfig:
    """The training job a scenario asks for. Equal configs must give bitwise-equal runs.

    ``global_batch_size`` is the number of samples per optimizer step over all ranks; the suite
    keeps it divisible by ``world_size * accumulation_steps`` for every world size it uses.
    Fingerprinted settings (MANIFEST-9) are ``accumulation_steps``, ``global_batch_size``,
    ``seed`` (dataset identity) and the model architecture.
    """

    output_dir: str
    run_id: str
    seed: int = 0
    total_steps: int = 8
    accumulation_steps: int = 1
    global_batch_size: int = 12
    save_every: int = 0  # used by fit(); 0 saves only at the final step
    eval_every: int = 0  # used by fit(); 0 never evaluates
    keep_last: int | None = None
    best_metric: str | None = None
    best_mode: Literal["max", "min"] = "min"
    best_min_delta: float = 0.0
    elastic: bool = False
    defer_grad_sync: bool = (
        True  # with `grad_sync`: False synchronises gradients on every micro-batch
    )
    steps_per_epoch: int | None = (
        None  # with `epochs`: size the training set to this many steps; None: your own
    )
    async_save: bool = False  # with `async_save`: write checkpoints in the background
    digest_algorithm: str | None = (
        None  # one of the adapter's `digest_algorithms`; None: its default
    )
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-specific settings, passed through

    def replace(self, **changes: Any) -> ScenarioConfig:
        """A copy with ``changes`` applied."""
        return ScenarioConfig(**{**asdict(self), **changes})


class TrainerAdapter:
    """A trainer as the conformance suite drives it: subclass it and construct as ``Adapter(config, ctx)``.

    The class attributes are the adapter's declarations; a subclass overrides the ones that
    differ from these defaults. The adapter also exposes ``step``, the current global step
    (optimizer steps completed), as an attribute or a property.
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    """What the trainer supports beyond the basics (see :data:`CAPABILITIES`); a test that needs
    an undeclared one is skipped."""
    eval_set_size: ClassVar[int] = 0
    """Number of eval samples addressable by :meth:`evaluate`; 0 without ``eval``."""
    checkpoint_format: ClassVar[CheckpointFormat] = "ckptspec"
    """One of :data:`CHECKPOINT_FORMATS`."""
    refusal_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    """The exception types, besides :class:`ckptspec.errors.CheckpointError`, with which the
    trainer refuses a resume (world-size mismatch, config drift, failed integrity check)."""
    framework: ClassVar[str] = ""
    """The framework and its version (e.g. ``"accelerate 1.15.0"``), copied into the JSON report."""
    saves_at_step_ends_only: ClassVar[bool] = False
    """True when the trainer can save only at the end of an optimizer step it ran (a loop that
    owns its schedule: no save right after ``__init__`` or ``resume``); a test that saves
    elsewhere does not apply to it."""
    restore_on_first_batch: ClassVar[bool] = False
    """True when a resume applies the RNG state only when the first batch after it is drawn, so
    :meth:`full_state` right after :meth:`resume` may not show it yet; the suite then compares
    the RNG state after the first resumed step (with the uninterrupted run's) instead."""
    eval_sharding: ClassVar[EvalSharding] = "suite"
    """One of :data:`EVAL_SHARDINGS`."""
    digest_algorithms: ClassVar[tuple[str, ...]] = ()
    """The file-digest algorithms (names of ``ckptspec.file_digest.ALGORITHMS``) the trainer can
    write its checkpoints' file digests with, chosen by ``ScenarioConfig.digest_algorithm``; the
    integrity test damages checkpoints written with each. Empty: the trainer's own choice only."""
    step: int

    @staticmethod
    def committed_checkpoints(config: ScenarioConfig) -> dict[int, str]:
        """The checkpoints the trainer itself would load for the run of ``config``, as ``{step:
        path}``, found on disk the way the trainer discovers them; the suite uses it to find,
        damage and compare checkpoints. Reads the disk only; no process group needed.

        The default is ckptspec's discovery: the committed ``step-N`` directories of the run
        directory. A native-format adapter overrides it."""
        run_dir = Path(config.output_dir) / config.run_id
        return {step: str(run_dir / checkpoint_dir_name(step)) for step in committed_steps(run_dir)}

    @staticmethod
    def best_checkpoint(config: ScenarioConfig) -> int | None:
        """With ``best`` only: the step of the checkpoint the trainer itself records as best for
        the run of ``config``, or None when it records none. Reads the disk only.

        The default reads ckptspec's run index (``run.json``'s ``best``); a native-format adapter
        that declares ``best`` overrides it with the framework's own record (RUN-4)."""
        path = Path(config.output_dir) / config.run_id / LAYOUT.run_index_file
        try:
            best = json.loads(path.read_text()).get("best") if path.is_file() else None
        except (OSError, ValueError):
            return None
        return int(best["step"]) if isinstance(best, dict) and "step" in best else None

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        """Build model, optimizer, scheduler, data and checkpoint manager at step 0. No I/O in the run directory."""

    def resume(self, checkpoint: str | None = None) -> int:
        """*Collective.* Load ``checkpoint`` (a committed checkpoint directory), or the run's
        latest when None; with no checkpoint at all, stay at step 0. Returns the step resumed at.

        Must raise a :class:`ckptspec.errors.CheckpointError` subclass (or one of
        :attr:`refusal_errors`), before modifying any live state, on world-size mismatch
        (RESUME-3), config drift (RESUME-5) or a failed integrity check (RESUME-6).
        """
        raise NotImplementedError(f"{type(self).__name__}.resume")

    def train(self, steps: int) -> list[StepRecord]:
        """*Collective.* Run ``steps`` more optimizer steps; one record per step."""
        raise NotImplementedError(f"{type(self).__name__}.train")

    def train_micro(self, count: int) -> None:
        """*Collective.* With ``micro_steps`` only: run the next ``count`` micro-batches
        (``0 < count < accumulation_steps``) of the next optimizer step without stepping the
        optimizer. The next :meth:`train` completes that step first (it counts as one of its
        steps); a :meth:`save` before then must be refused with a
        :class:`ckptspec.errors.CheckpointError` or resume bit-exactly (RESUME-9)."""
        raise NotImplementedError(f"{type(self).__name__}.train_micro (capability `micro_steps`)")

    def save(self) -> str:
        """*Collective.* Commit a checkpoint at the current step; return its directory.

        Metrics of an :meth:`evaluate` call made at the current step belong to this checkpoint
        (manifest ``eval``, best tracking).
        """
        raise NotImplementedError(f"{type(self).__name__}.save")

    def fit(self) -> list[StepRecord]:
        """*Collective.* The trainer's own main loop: resume from latest, train to
        ``total_steps`` saving every ``save_every`` steps and at the end, evaluating every
        ``eval_every`` steps on the full eval set. Returns records of the steps it trained.
        """
        raise NotImplementedError(f"{type(self).__name__}.fit")

    def evaluate(self, samples: Sequence[int]) -> dict[str, float] | None:
        """*Collective.* With ``eval`` only: evaluate the current model on this rank's shard
        ``samples`` (ids in ``range(eval_set_size)``; possibly empty). Returns the global
        metrics, or None when the union of all shards is empty."""
        raise NotImplementedError(f"{type(self).__name__}.evaluate (capability `eval`)")

    def full_state(self) -> dict[str, Any]:
        """*Collective.* The complete training state as this rank would restore it, unsharded:
        ``{"model": ..., "optimizer": ..., "lr_scheduler": ..., "rng": ..., "data_position": ...}``,
        nested mappings of full (not sharded) tensors and JSON values."""
        raise NotImplementedError(f"{type(self).__name__}.full_state")

    def close(self) -> None:
        """Release resources (not the default process group). The default releases nothing."""


@dataclass(frozen=True)
class Declarations:
    """An adapter's declarations as the suite reads them (see :class:`TrainerAdapter`)."""

    capabilities: frozenset[str]
    eval_set_size: int
    checkpoint_format: str
    refusal_errors: tuple[type[BaseException], ...]
    framework: str
    committed_checkpoints: Callable[[ScenarioConfig], dict[int, str]]
    best_checkpoint: Callable[[ScenarioConfig], int | None]
    saves_at_step_ends_only: bool = False
    restore_on_first_batch: bool = False
    eval_sharding: str = "suite"
    digest_algorithms: tuple[str, ...] = ()

    @property
    def native(self) -> bool:
        """Whether the trainer keeps its own checkpoint format (writer requirements do not apply)."""
        return self.checkpoint_format == "native"

    def checkpoints(self, config: ScenarioConfig) -> dict[int, str]:
        """``committed_checkpoints(config)`` in ascending steps, as ``{int: str}``."""
        return {
            int(step): str(path)
            for step, path in sorted(self.committed_checkpoints(config).items())
        }


def declarations(adapter: Any) -> Declarations:
    """The declarations of ``adapter`` (a class or factory), each one it does not declare taken
    from :class:`TrainerAdapter`: the one place the suite reads them, so an adapter that does not
    subclass :class:`TrainerAdapter` keeps working. Raises ``ValueError`` naming a malformed one."""
    values = {
        name: getattr(adapter, name, getattr(TrainerAdapter, name))
        for name in (
            "capabilities",
            "eval_set_size",
            "checkpoint_format",
            "refusal_errors",
            "framework",
            "committed_checkpoints",
            "best_checkpoint",
            "saves_at_step_ends_only",
            "restore_on_first_batch",
            "eval_sharding",
            "digest_algorithms",
        )
    }
    capabilities = values["capabilities"]
    if not isinstance(capabilities, frozenset):
        raise ValueError("`capabilities` must be a frozenset")
    unknown = sorted(set(capabilities) - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}; known: {list(CAPABILITIES)}")
    if values["checkpoint_format"] not in CHECKPOINT_FORMATS:
        raise ValueError(
            f"checkpoint_format {values['checkpoint_format']!r}; known: {list(CHECKPOINT_FORMATS)}"
        )
    errors = values["refusal_errors"]
    if not isinstance(errors, tuple) or not all(
        isinstance(e, type) and issubclass(e, BaseException) for e in errors
    ):
        raise ValueError(f"`refusal_errors` must be a tuple of exception classes, got {errors!r}")
    if not callable(values["committed_checkpoints"]):
        raise ValueError("`committed_checkpoints` must be a static method (config) -> {step: path}")
    if not callable(values["best_checkpoint"]):
        raise ValueError("`best_checkpoint` must be a static method (config) -> step or None")
    if values["eval_sharding"] not in EVAL_SHARDINGS:
        raise ValueError(
            f"eval_sharding {values['eval_sharding']!r}; known: {list(EVAL_SHARDINGS)}"
        )
    algorithms = values["digest_algorithms"]
    if not isinstance(algorithms, tuple) or not set(algorithms) <= set(ALGORITHMS):
        raise ValueError(
            f"`digest_algorithms` must be a tuple of {list(ALGORITHMS)}, got {algorithms!r}"
        )
    for flag in ("saves_at_step_ends_only", "restore_on_first_batch"):
        if not isinstance(values[flag], bool):
            raise ValueError(f"`{flag}` must be a bool, got {values[flag]!r}")
    return Declarations(
        capabilities=frozenset(capabilities),
        eval_set_size=int(values["eval_set_size"]),
        checkpoint_format=str(values["checkpoint_format"]),
        refusal_errors=errors,
        framework=str(values["framework"]),
        committed_checkpoints=values["committed_checkpoints"],
        best_checkpoint=values["best_checkpoint"],
        saves_at_step_ends_only=values["saves_at_step_ends_only"],
        restore_on_first_batch=values["restore_on_first_batch"],
        eval_sharding=str(values["eval_sharding"]),
        digest_algorithms=algorithms,
    )


def load_adapter(spec: str) -> type[TrainerAdapter]:
    """Import ``module:object`` and check its declarations (:func:`declarations`).

    Raises ``ValueError`` with a precise message for a malformed string, a missing module or
    attribute, or a malformed declaration (e.g. an unknown capability).
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"adapter must be given as 'module:object', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import adapter module {module_name!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(getattr(obj, "capabilities", None), frozenset):
        raise ValueError(f"adapter {spec!r} must declare `capabilities` as a frozenset")
    try:
        declarations(obj)
    except ValueError as exc:
        raise ValueError(f"adapter {spec!r}: {exc}") from None
    return obj
