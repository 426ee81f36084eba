"""The adapter protocol: the whole surface the conformance suite needs from a trainer.

The suite builds one adapter inside every rank process of every phase, from an import string
``module:object`` (a class, or a factory callable with the same signature). Before building
it, the suite has already initialised the default ``torch.distributed`` process group (gloo on
CPU, NCCL on CUDA) from the elastic launcher's environment; the adapter uses that group and
must not create or destroy the default group itself.

Every method marked *collective* is called on all ranks, in the same order. The suite computes
every digest and comparison itself (with :mod:`ckptspec.digest`); adapters only expose state.

Protocol v2 adds three optional class-level declarations for trainers that keep their own
checkpoint format (a v1 adapter, which declares none of them, is a ckptspec writer):

- ``checkpoint_format``: ``"ckptspec"`` (the trainer writes ckptspec's layout and manifest) or
  ``"native"`` (the framework's own format; format requirements do not apply to it).
- ``committed_checkpoints(config)``: a static method listing the checkpoints the trainer itself
  would load for the run of ``config``, as ``{step: path}``, read from disk the way the trainer
  discovers them; the suite uses it to find, damage and compare checkpoints without a manifest.
- ``refusal_errors``: the exception types the trainer raises to refuse a resume (world-size
  mismatch, config drift, failed integrity check), counted like a ``CheckpointError``.

An adapter may also set ``framework`` (e.g. ``"accelerate 1.15.0"``), copied into the JSON report.

Read them with :func:`checkpoint_format`, :func:`committed_checkpoints` and
:func:`refusal_errors`, which supply the v1 defaults.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Literal, Optional, Protocol, Sequence, runtime_checkable

from ckptspec.training import StepRecord

Capability = Literal[
    "reshard", "elastic", "eval", "accumulation", "micro_steps", "grad_sync", "epochs", "best", "retention", "multi_node",
]

CAPABILITIES: tuple[str, ...] = (
    "reshard", "elastic", "eval", "accumulation", "micro_steps", "grad_sync", "epochs", "best", "retention", "multi_node",
)
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
"""


CheckpointFormat = Literal["ckptspec", "native"]

CHECKPOINT_FORMATS: tuple[str, ...] = ("ckptspec", "native")
"""The values of an adapter's ``checkpoint_format``; without the attribute it is ``"ckptspec"``."""


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
    keep_last: Optional[int] = None
    best_metric: Optional[str] = None
    best_mode: Literal["max", "min"] = "min"
    best_min_delta: float = 0.0
    elastic: bool = False
    defer_grad_sync: bool = True  # with `grad_sync`: False synchronises gradients on every micro-batch
    steps_per_epoch: Optional[int] = None  # with `epochs`: size the training set to this many steps; None: your own
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-specific settings, passed through

    def replace(self, **changes: Any) -> "ScenarioConfig":
        """A copy with ``changes`` applied."""
        return ScenarioConfig(**{**asdict(self), **changes})


@runtime_checkable
class TrainerAdapter(Protocol):
    """A trainer as the conformance suite drives it. Construct as ``Adapter(config, ctx)``."""

    capabilities: ClassVar[frozenset[str]]
    eval_set_size: ClassVar[int]  # number of eval samples addressable by evaluate(); 0 without `eval`

    def __init__(self, config: ScenarioConfig, ctx: RankContext) -> None:
        """Build model, optimizer, scheduler, data and checkpoint manager at step 0. No I/O in the run directory."""

    @property
    def step(self) -> int:
        """The current global step (optimizer steps completed)."""

    def resume(self, checkpoint: Optional[str] = None) -> int:
        """*Collective.* Load ``checkpoint`` (a committed checkpoint directory), or the run's
        latest when None; with no checkpoint at all, stay at step 0. Returns the step resumed at.

        Must raise a :class:`ckptspec.errors.CheckpointError` subclass, before modifying any live
        state, on world-size mismatch (RESUME-3), config drift (RESUME-5) or a failed integrity
        check (RESUME-6).
        """

    def train(self, steps: int) -> list[StepRecord]:
        """*Collective.* Run ``steps`` more optimizer steps; one record per step."""

    def train_micro(self, count: int) -> None:
        """*Collective.* With ``micro_steps`` only: run the next ``count`` micro-batches
        (``0 < count < accumulation_steps``) of the next optimizer step without stepping the
        optimizer. The next :meth:`train` completes that step first (it counts as one of its
        steps); a :meth:`save` before then must be refused with a
        :class:`ckptspec.errors.CheckpointError` or resume bit-exactly (RESUME-9)."""

    def save(self) -> str:
        """*Collective.* Commit a checkpoint at the current step; return its directory.

        Metrics of an :meth:`evaluate` call made at the current step belong to this checkpoint
        (manifest ``eval``, best tracking).
        """

    def fit(self) -> list[StepRecord]:
        """*Collective.* The trainer's own main loop: resume from latest, train to
        ``total_steps`` saving every ``save_every`` steps and at the end, evaluating every
        ``eval_every`` steps on the full eval set. Returns records of the steps it trained.
        """

    def evaluate(self, samples: Sequence[int]) -> Optional[dict[str, float]]:
        """*Collective.* Evaluate the current model on this rank's shard ``samples`` (ids in
        ``range(eval_set_size)``; possibly empty). Returns the global metrics, or None when the
        union of all shards is empty."""

    def full_state(self) -> dict[str, Any]:
        """*Collective.* The complete training state as this rank would restore it, unsharded:
        ``{"model": ..., "optimizer": ..., "lr_scheduler": ..., "rng": ..., "data_position": ...}``,
        nested mappings of full (not sharded) tensors and JSON values."""

    def close(self) -> None:
        """Release resources (not the default process group)."""


def checkpoint_format(adapter: type) -> str:
    """The checkpoint format ``adapter`` declares: ``"native"`` or ``"ckptspec"`` (the v1 default)."""
    return str(getattr(adapter, "checkpoint_format", "ckptspec"))


def refusal_errors(adapter: type) -> tuple[type[BaseException], ...]:
    """The exception types, besides ``CheckpointError``, with which ``adapter``'s trainer refuses a
    resume; ``()`` when it declares none (v1)."""
    return tuple(getattr(adapter, "refusal_errors", ()))


def committed_checkpoints(adapter: type, config: ScenarioConfig) -> Optional[dict[int, str]]:
    """The committed checkpoints of ``config``'s run as ``adapter``'s trainer would find them
    (``{step: path}``, ascending steps), or None when the adapter has no discovery hook (v1: the
    suite reads ckptspec's run directory instead). Reads the disk only; no process group needed."""
    hook: Optional[Callable[[ScenarioConfig], dict[int, str]]] = getattr(adapter, "committed_checkpoints", None)
    if hook is None:
        return None
    return {int(step): str(path) for step, path in sorted(hook(config).items())}


def load_adapter(spec: str) -> type[TrainerAdapter]:
    """Import ``module:object`` and check that it looks like a :class:`TrainerAdapter`.

    Raises ``ValueError`` with a precise message for a malformed string, a missing module or
    attribute, or undeclared/unknown capabilities.
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
    capabilities = getattr(obj, "capabilities", None)
    if not isinstance(capabilities, frozenset):
        raise ValueError(f"adapter {spec!r} must declare `capabilities` as a frozenset")
    unknown = sorted(set(capabilities) - set(CAPABILITIES))
    if unknown:
        raise ValueError(f"adapter {spec!r} declares unknown capabilities {unknown}; known: {list(CAPABILITIES)}")
    if checkpoint_format(obj) not in CHECKPOINT_FORMATS:
        raise ValueError(f"adapter {spec!r} declares checkpoint_format {checkpoint_format(obj)!r}; "
                         f"known: {list(CHECKPOINT_FORMATS)}")
    errors = getattr(obj, "refusal_errors", ())
    if not isinstance(errors, tuple) or not all(isinstance(e, type) and issubclass(e, BaseException) for e in errors):
        raise ValueError(f"adapter {spec!r} must declare `refusal_errors` as a tuple of exception classes, got {errors!r}")
    hook = getattr(obj, "committed_checkpoints", None)
    if hook is not None and not callable(hook):
        raise ValueError(f"adapter {spec!r}: `committed_checkpoints` must be a static method (config) -> {{step: path}}")
    return obj
