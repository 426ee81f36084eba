"""The reference trainer: FSDP2 + AdamW + warmup/cosine LR + accumulation + checkpoint/resume.

Guarantees: every optimizer step is deterministic given (config, world size); a checkpoint is
taken only at an optimizer-step boundary; a resume from a checkpoint of the same world size and
config continues bit-exactly (losses, learning rates, parameters, optimizer and scheduler state,
RNG, data order).

Every behaviour the spec constrains is one small method, and the collaborating classes are
class attributes (``policy_class``, ``commit_class``, ``loader_class``, ``evaluator_class``), so
that a single behaviour can be replaced by a subclass. Checkpoints are written, found and read
by the library's front door, :class:`~ckptspec.checkpointing.Checkpointer`, built from those
classes; the trainer is one client of it, restoring its small components itself from the
checkpoint the front door checked and verified.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Shard

from ckptspec.checkpointing.checkpointer import Checkpointer, Sharded
from ckptspec.checkpointing.commit import CommitProtocol, GroupState, SaveRequest
from ckptspec.checkpointing.distributed import DistContext, configure_determinism
from ckptspec.checkpointing.fingerprint import fingerprint
from ckptspec.checkpointing.loader import CheckpointLoader, LoadPlan
from ckptspec.checkpointing.run_policy import BestPolicy, RunPolicy
from ckptspec.errors import MidAccumulationError
from ckptspec.manifest import EvalResult, Progress, ResumeRecord
from ckptspec.reference_impl import rng
from ckptspec.reference_impl.config import TrainConfig, fingerprint_values, lr_factor
from ckptspec.reference_impl.data import (
    ConsumptionLedger,
    GlobalBatchSampler,
    SyntheticTokens,
    shard_contiguous,
)
from ckptspec.reference_impl.evaluator import Evaluator
from ckptspec.reference_impl.export import source_record
from ckptspec.reference_impl.model import TinyTransformer
from ckptspec.training import StepRecord


@dataclass
class AccumulationCycle:
    """The optimizer step in progress: its micro-batches (this rank's sample ids), how many have
    been accumulated, and the loss summed over them."""

    micro_batches: list[list[int]]
    tokens: int
    loss_sum: torch.Tensor
    done: int = 0

    @property
    def remaining(self) -> int:
        return len(self.micro_batches) - self.done


def unsharded(state: Any) -> Any:
    """*Collective.* ``state`` with every FSDP2 DTensor replaced by its full tensor.

    A tensor sharded on dimension 0 of a one-dimensional mesh (FSDP2's layout: ``torch.chunk``
    pieces, the last ones possibly short or empty) is gathered with a plain ``all_gather`` of
    padded pieces; any other DTensor with ``full_tensor()``. This avoids
    ``StateDictOptions(full_state_dict=True)``, whose DTensor redistribution waits on functional
    collectives: with gloo on CPU (torch 2.13) that path has aborted a rank, rarely, with
    "double free or corruption" inside ``wait_tensor`` (kept as a loop in
    tests/conformance/test_heap_forkserver.py).
    """
    if isinstance(state, dict):
        return {key: unsharded(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(unsharded(value) for value in state)
    if not isinstance(state, DTensor):
        return state
    if state.device_mesh.ndim != 1 or tuple(state.placements) != (Shard(0),):
        return state.full_tensor()
    local, world = state.to_local(), state.device_mesh.size()
    rows = -(-state.shape[0] // world)  # torch.chunk's piece size
    padded = local.new_zeros((rows, *state.shape[1:]))
    padded[: local.shape[0]] = local
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded, group=state.device_mesh.get_group())
    return torch.cat(pieces)[: state.shape[0]]


class Trainer:
    """One rank of a reference training run. Construction does no I/O in the run directory."""

    policy_class = RunPolicy
    commit_class = CommitProtocol
    loader_class = CheckpointLoader
    RESTORED_COMPONENTS: tuple[str, ...] = (
        "model",
        "optimizer",
        "lr_scheduler",
        "trainer_state",
        "data_position",
        "node_ledger",
        "pair_ledger",
        "rng",
    )
    """What a resume restores (or re-derives): a checkpoint without one of them is refused before loading."""
    evaluator_class = Evaluator

    def __init__(self, config: TrainConfig, ctx: DistContext) -> None:
        per_micro, rem = divmod(
            config.global_batch_size, ctx.world_size * config.accumulation_steps
        )
        if rem or per_micro == 0:
            raise ValueError(
                f"global batch size {config.global_batch_size} is not a positive multiple of "
                f"world size {ctx.world_size} x accumulation steps {config.accumulation_steps}"
            )
        self.config, self.ctx, self.device = config, ctx, ctx.device
        configure_determinism(self.device)
        self.model = self._build_model()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self._init_optimizer_state()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, functools.partial(lr_factor, config)
        )
        args = config.model
        self.dataset = SyntheticTokens(
            config.seed, config.dataset_size, args.seq_len, args.vocab_size
        )
        self.eval_dataset = SyntheticTokens(
            config.seed + 1, config.eval_set_size, args.seq_len, args.vocab_size, name="eval"
        )
        self.sampler = GlobalBatchSampler(
            config.dataset_size, config.global_batch_size, config.seed
        )
        self.ledgers = self._build_ledgers()
        self.evaluator = self.evaluator_class(self.eval_dataset, args, self.device)
        self.fingerprint_values = fingerprint_values(config, args, self.dataset.identity)
        if config.init_from is not None:  # the starting weights are part of the run's identity
            self.fingerprint_values["init_from"] = source_record(config.init_from)
        best = (
            BestPolicy(config.best_metric, config.best_mode, config.best_min_delta)
            if config.best_metric
            else None
        )
        async_groups = (
            {name: dist.new_group(backend="gloo") for name in ("model", "optimizer", "commit")}
            if config.async_save
            else None
        )
        self.checkpointer = Checkpointer(
            Path(config.output_dir) / config.run_id,
            ctx,
            self.fingerprint_values,
            run_id=config.run_id,
            best=best,
            keep_last=config.keep_last,
            elastic=config.elastic,
            verify=config.verify,
            group_sizes={name: ledger.group_size for name, (_, ledger) in self.ledgers.items()},
            digest_algorithm=config.digest_algorithm,
            async_groups=async_groups,
            policy_class=self.policy_class,
            commit_class=self.commit_class,
            loader_class=self.loader_class,
        )
        self.policy, self.commit, self.loader = (
            self.checkpointer.policy,
            self.checkpointer.commit,
            self.checkpointer.loader,
        )
        self.global_step = 0
        self.last_eval: tuple[int, EvalResult] | None = None
        self.cycle: AccumulationCycle | None = (
            None  # set between micro-batches of one optimizer step
        )
        self.step_callback: Callable[[StepRecord], None] | None = (
            None  # called by fit() after each step
        )
        self.log: Callable[[str], None] = print if ctx.rank == 0 else (lambda _msg: None)

    # ------------------------------------------------------------------ construction
    def _build_model(self) -> torch.nn.Module:
        """Identical initial weights on every rank (seeded, without touching the global RNG),
        sharded with FSDP2 per block and at the root; then this rank's RNG is seeded."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            model = TinyTransformer(self.config.model)
        model.to(self.device)
        for block in model.layers:
            fully_shard(block)
        fully_shard(model)
        rng.rederive(self.config.seed, 0, self.ctx.rank, self.device)
        return model

    def _build_ledgers(self) -> dict[str, tuple[str, ConsumptionLedger]]:
        """The data ledgers of this rank's groups, by component name -> (sharing, ledger):
        ``node_ledger`` (``per_node``: the ranks of this node) and ``pair_ledger`` (``per_group``:
        pairs of consecutive ranks when the world size is even, else single ranks)."""
        ctx = self.ctx
        if (
            ctx.world_size % ctx.local_world_size
            or ctx.rank % ctx.local_world_size != ctx.local_rank
        ):
            raise ValueError(
                f"rank {ctx.rank} (local rank {ctx.local_rank} of {ctx.local_world_size}, world size {ctx.world_size}): "
                "per-node state needs nodes of equal size whose global ranks are consecutive"
            )
        pair = 2 if ctx.world_size % 2 == 0 else 1
        return {
            "node_ledger": ("per_node", ConsumptionLedger.for_rank(ctx.rank, ctx.local_world_size)),
            "pair_ledger": ("per_group", ConsumptionLedger.for_rank(ctx.rank, pair)),
        }

    def _init_optimizer_state(self) -> None:
        """Create AdamW's state eagerly, exactly as its first step would (step 0, zero moments),
        so that state dicts have the same structure at every step, step 0 included."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                self.optimizer.state[p] = {
                    "step": torch.tensor(0.0, dtype=torch.float32),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }

    # ------------------------------------------------------------------ training
    @property
    def step(self) -> int:
        return self.global_step

    def train_step(self) -> StepRecord:
        """*Collective.* One optimizer step over one global batch (completing the step that
        :meth:`train_micro` started, if any); returns this rank's record (``loss`` is the global
        mean token loss, identical on every rank)."""
        cycle = self.cycle or self._start_cycle()
        self._accumulate(cycle, cycle.remaining)
        lr = self.scheduler.get_last_lr()[0]
        self._optimizer_step()
        self.global_step += 1
        totals = torch.stack(
            [
                cycle.loss_sum,
                torch.tensor(float(cycle.tokens), dtype=torch.float64, device=self.device),
            ]
        )
        dist.all_reduce(totals)
        samples = tuple(s for m in cycle.micro_batches for s in m)
        return StepRecord(
            step=self.global_step, loss=float(totals[0] / totals[1]), lr=lr, samples=samples
        )

    def train_micro(self, count: int) -> None:
        """*Collective.* Accumulate the next ``count`` micro-batches of the next optimizer step
        without stepping the optimizer; the following :meth:`train_step` completes the step.
        A save in between is refused (:class:`~ckptspec.errors.MidAccumulationError`)."""
        remaining = self.cycle.remaining if self.cycle else self.config.accumulation_steps
        if not 0 < count < remaining:
            raise ValueError(
                f"train_micro({count}): {remaining} micro-batches remain in this optimizer step; "
                f"pass 1 to {remaining - 1} (train_step() completes the step)"
            )
        self._accumulate(self.cycle or self._start_cycle(), count)

    def _start_cycle(self) -> AccumulationCycle:
        c = self.config
        global_batch = self.sampler.next_global_batch()
        for _, ledger in self.ledgers.values():
            ledger.record(global_batch, self.ctx.world_size)
        micro_batches = self.sampler.rank_micro_batches(
            global_batch, self.ctx.rank, self.ctx.world_size, c.accumulation_steps
        )
        tokens = sum(len(m) for m in micro_batches) * c.model.seq_len
        self.cycle = AccumulationCycle(
            micro_batches, tokens, torch.zeros((), dtype=torch.float64, device=self.device)
        )
        return self.cycle

    def _accumulate(self, cycle: AccumulationCycle, count: int) -> None:
        """Forward and backward of the next ``count`` micro-batches of ``cycle``."""
        self.model.train()
        for _ in range(count):
            self._set_gradient_sync(cycle.done == len(cycle.micro_batches) - 1)
            inputs, targets = self.dataset.batch(cycle.micro_batches[cycle.done], self.device)
            logits = self.model(inputs)
            loss = F.cross_entropy(logits, targets.flatten(), reduction="sum")
            (loss / cycle.tokens).backward()  # FSDP averages over ranks: the global mean token loss
            cycle.loss_sum += loss.detach().double()
            cycle.done += 1

    def _set_gradient_sync(self, sync: bool) -> None:
        """Defer the gradient reduce-scatter to the last micro-step (unless disabled)."""
        self.model.set_requires_gradient_sync(sync or not self.config.defer_grad_sync)

    def _optimizer_step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.cycle = None

    def train(
        self, steps: int, on_step: Callable[[StepRecord], None] | None = None
    ) -> list[StepRecord]:
        """*Collective.* Run ``steps`` optimizer steps."""
        records = []
        for _ in range(steps):
            records.append(self.train_step())
            if on_step:
                on_step(records[-1])
        return records

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, samples: Sequence[int]) -> dict[str, float] | None:
        """*Collective.* Global metrics over every rank's ``samples`` (None if all are empty);
        remembered for the checkpoint of the current step."""
        metrics = self.evaluator.evaluate(self.model, samples)
        self.last_eval = (
            (
                self.global_step,
                EvalResult(metrics=metrics, samples=self.evaluator.last_sample_count),
            )
            if metrics
            else None
        )
        return metrics

    def evaluate_full(self) -> dict[str, float] | None:
        """*Collective.* Evaluate on the whole eval set, split contiguously across ranks."""
        return self.evaluate(
            shard_contiguous(self.config.eval_set_size, self.ctx.rank, self.ctx.world_size)
        )

    # ------------------------------------------------------------------ checkpointing
    def save(self) -> Path:
        """*Collective.* Checkpoint the current step (asynchronously with ``async_save``: it is
        committed by the next save or by :meth:`finish_saves`). Returns the checkpoint directory."""
        self._ensure_boundary()
        return self.checkpointer.write(self.save_request(), async_save=self.config.async_save)

    def finish_saves(self) -> None:
        """*Collective.* Commit a pending asynchronous save, if any."""
        self.checkpointer.wait()

    @property
    def resumed_from(self) -> ResumeRecord | None:
        """The checkpoint this run resumed from, if any."""
        return self.checkpointer.resumed_from

    def _ensure_boundary(self) -> None:
        """Refuse a save between the micro-batches of one optimizer step (RESUME-9)."""
        if self.cycle is not None:
            raise MidAccumulationError(
                self.global_step, self.cycle.done, len(self.cycle.micro_batches)
            )

    def capture_rng(self) -> dict[str, torch.Tensor]:
        """This rank's RNG state as saved and compared: CPU generator and current device only (RESUME-8)."""
        return rng.capture(self.device)

    def save_request(self) -> SaveRequest:
        """This rank's contribution to a checkpoint of the current step (state dicts reference live state)."""
        pos = self.sampler.position
        eval_result = (
            self.last_eval[1] if self.last_eval and self.last_eval[0] == self.global_step else None
        )
        return SaveRequest(
            progress=Progress(
                global_step=self.global_step,
                epoch=pos.epoch,
                batches_in_epoch=pos.batches_in_epoch,
                samples_in_epoch=pos.samples_in_epoch,
                samples_seen=pos.samples_seen,
                accumulation_steps=self.config.accumulation_steps,
            ),
            config=fingerprint(self.fingerprint_values),
            sharded={
                "model": ("model", get_model_state_dict(self.model)),
                "optimizer": ("optimizer", get_optimizer_state_dict(self.model, self.optimizer)),
            },
            replicated={
                "lr_scheduler": ("lr_scheduler", self.scheduler.state_dict()),
                "trainer_state": ("trainer_state", {"global_step": self.global_step}),
                "data_position": ("data_position", self.sampler.state_dict()),
            },
            per_rank={"rng": ("rng", self.capture_rng())},
            grouped={
                name: GroupState("data_position", sharing, ledger.group_size, ledger.state_dict())
                for name, (sharing, ledger) in self.ledgers.items()
            },
            step_counts={"optimizer": self.global_step},
            eval=eval_result,
            resumed_from=self.resumed_from,
        )

    def resume(self, checkpoint: str | os.PathLike[str] | None = None) -> int:
        """*Collective.* Load ``checkpoint``, or the run's latest when None; with none at all stay
        at step 0. Every check runs, and the model and optimizer are read and verified on every
        rank, before any live state changes (:meth:`Checkpointer.resume`). Returns the step resumed at."""
        sharded = {
            "model": Sharded(lambda: get_model_state_dict(self.model), self._load_model),
            "optimizer": Sharded(
                lambda: get_optimizer_state_dict(self.model, self.optimizer), self._load_optimizer
            ),
        }
        self.checkpointer.resume(
            sharded, checkpoint, restore=self._restore, required=self.RESTORED_COMPONENTS
        )
        return self.global_step

    def _restore(self, plan: LoadPlan) -> None:
        """Restore the small components from ``plan``, once the model and optimizer are loaded."""
        self._load_scheduler(plan)
        self._load_trainer_state(plan)
        self._load_data_position(plan)
        self._load_ledgers(plan)
        self._load_rng(plan)

    def _load_weights(self, plan: LoadPlan) -> None:
        state = get_model_state_dict(self.model)
        self.loader.read_sharded(plan, "model", state).apply()
        self._load_model(state)

    def _load_model(self, state: dict[str, Any]) -> None:
        set_model_state_dict(self.model, state)

    def _load_optimizer(self, state: dict[str, Any]) -> None:
        set_optimizer_state_dict(self.model, self.optimizer, state)

    def _load_scheduler(self, plan: LoadPlan) -> None:
        self.scheduler.load_state_dict(self.loader.load_json(plan, "lr_scheduler"))

    def _load_trainer_state(self, plan: LoadPlan) -> None:
        self.global_step = self.loader.load_json(plan, "trainer_state")["global_step"]

    def _load_data_position(self, plan: LoadPlan) -> None:
        self.sampler.load_state_dict(self.loader.load_json(plan, "data_position"))

    def _load_ledgers(self, plan: LoadPlan) -> None:
        """Restore this rank's groups' data ledgers, or start new ones at the checkpoint's step
        when the resume re-derives them (another world size or node layout, elastic)."""
        for name, (_, ledger) in self.ledgers.items():
            if name in plan.rederived:
                ledger.restart(plan.manifest.step)
            else:
                ledger.load_state_dict(self.loader.load_group(plan, name))

    def _load_rng(self, plan: LoadPlan) -> None:
        """Restore this rank's RNG, or re-derive it from (seed, step, rank) in an elastic resume."""
        if "rng" in plan.rederived:
            rng.rederive(self.config.seed, plan.manifest.step, self.ctx.rank, self.device)
        else:
            rng.restore(self.loader.load_per_rank(plan, "rng"), self.device)

    def load_weights(self, checkpoint: str | os.PathLike[str]) -> int:
        """*Collective.* Load only the model component (any world size, for evaluation).
        The model component's files are verified and the architecture must match."""
        plan = self.loader.plan_weights(Path(checkpoint))
        self._load_weights(plan)
        return plan.manifest.step

    def init_weights(self, source: str | os.PathLike[str]) -> int:
        """*Collective.* Start from the model weights of ``source``: a weights-only export
        (safetensors, read by torch's Hugging Face storage reader, resharded to this world size)
        or any checkpoint. Its model files are verified and the architecture must match; nothing
        else is loaded. Returns the source's step."""
        plan = self.loader.plan_weights(Path(source))
        if plan.component("model").format != "safetensors":
            self._load_weights(plan)
            return plan.manifest.step
        state = get_model_state_dict(self.model)
        dcp.load(state, storage_reader=dcp.HuggingFaceStorageReader(str(plan.path)))
        set_model_state_dict(self.model, state)
        return plan.manifest.step

    # ------------------------------------------------------------------ main loop
    def fit(self) -> list[StepRecord]:
        """*Collective.* Train to ``steps``: evaluate every ``eval_every`` steps, save every
        ``save_every`` steps, when an eval sets a new best, and at the final step. A run that
        already reached ``steps`` does nothing and writes nothing."""
        self.policy.startup()
        records: list[StepRecord] = []
        while self.global_step < self.config.steps:
            start = time.perf_counter()
            record = self.train_step()
            records.append(record)
            self._log_step(record, time.perf_counter() - start)
            if self.step_callback:
                self.step_callback(record)
            metrics = self.evaluate_full() if self._eval_due() else None
            if metrics is not None:
                self.log(
                    f"eval  step {self.global_step:5d} | "
                    + " | ".join(f"{k} {v:.6f}" for k, v in metrics.items())
                )
            if self._save_due(metrics):
                start = time.perf_counter()
                path = self.save()
                verb = "started" if self.config.async_save else "committed"
                self.log(
                    f"ckpt  step {self.global_step:5d} | {verb} {path.name} | training blocked {time.perf_counter() - start:.3f} s"
                )
        self.finish_saves()
        return records

    def _eval_due(self) -> bool:
        return bool(self.config.eval_every) and self.global_step % self.config.eval_every == 0

    def _save_due(self, metrics: dict[str, float] | None) -> bool:
        every = self.config.save_every
        return (
            self.global_step == self.config.steps
            or (every > 0 and self.global_step % every == 0)
            or self.policy.improves(metrics)
        )

    def _log_step(self, record: StepRecord, seconds: float) -> None:
        tokens = self.config.global_batch_size * self.config.model.seq_len
        self.log(
            f"train step {record.step:5d} | loss {record.loss:.6f} | lr {record.lr:.3e} | {tokens / seconds:,.0f} tok/s"
        )

    # ------------------------------------------------------------------ introspection
    def full_state(self) -> dict[str, Any]:
        """*Collective.* Unsharded state: full model and optimizer tensors, scheduler state, this
        rank's RNG, data position, and the data ledgers of this rank's node and group. The sharded
        state dicts are gathered by :func:`unsharded`."""
        return {
            "model": unsharded(get_model_state_dict(self.model)),
            "optimizer": unsharded(get_optimizer_state_dict(self.model, self.optimizer)),
            "lr_scheduler": self.scheduler.state_dict(),
            "rng": self.capture_rng(),
            "data_position": self.sampler.state_dict(),
            **{name: ledger.state_dict() for name, (_, ledger) in self.ledgers.items()},
        }
