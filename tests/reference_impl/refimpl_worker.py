"""In-process scenarios of the reference-trainer tests, run on every rank of a fresh process group.

    python -m torch.distributed.run --standalone --nproc-per-node N refimpl_worker.py OUT PARAMS_JSON

``PARAMS_JSON`` maps scenario names to their parameters; the scenarios run in that order in
the same processes, and each rank writes ``OUT/rank<r>.json`` mapping scenario names to results.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ckptspec.checkpointing.distributed import exit_process, init_distributed
from ckptspec.digest import state_digest
from ckptspec.errors import (
    CheckpointError,
    IntegrityError,
    MidAccumulationError,
    WorldSizeMismatchError,
)
from ckptspec.reference_impl.config import TrainConfig
from ckptspec.reference_impl.trainer import Trainer


def make_trainer(params: dict[str, Any], **overrides: Any) -> Trainer:
    config = TrainConfig(
        output_dir=params["output_dir"],
        run_id=params["run_id"],
        steps=params["steps"],
        seed=3,
        global_batch_size=12,
        accumulation_steps=params.get("accumulation_steps", 1),
        **overrides,
    )
    return Trainer(config, init_distributed("cpu"))


def digests(trainer: Trainer) -> dict[str, str]:
    return {name: state_digest(value) for name, value in trainer.full_state().items()}


def refused(trainer: Trainer, checkpoint: str, error: type[CheckpointError]) -> dict[str, Any]:
    """Resume must raise ``error`` and leave every piece of live state untouched."""
    before = digests(trainer)
    try:
        trainer.resume(checkpoint)
    except error as exc:
        return {
            "error": str(exc),
            "components": getattr(exc, "components", None),
            "unchanged": digests(trainer) == before,
        }
    return {"error": None}


def reshard(params: dict[str, Any]) -> dict[str, Any]:
    """Load a checkpoint written at another world size: strict fails, elastic reshards."""
    trainer = make_trainer(params)
    result: dict[str, Any] = {
        "strict": refused(trainer, params["checkpoint"], WorldSizeMismatchError)
    }
    if params.get("corrupt"):
        copy = Path(params["output_dir"]) / "corrupt" / Path(params["checkpoint"]).name
        if trainer.ctx.rank == 0:
            shutil.copytree(params["checkpoint"], copy)
            victim = sorted((copy / "optimizer").glob("*.distcp"))[-1]
            data = bytearray(victim.read_bytes())
            data[len(data) // 2] ^= 0xFF
            victim.write_bytes(bytes(data))
        dist.barrier()
        trainer.loader.elastic = True
        result["integrity"] = refused(trainer, str(copy), IntegrityError)
    trainer.loader.elastic = True
    result["resumed_at"] = trainer.resume(params["checkpoint"])
    result["ledgers"] = {name: ledger.state_dict() for name, (_, ledger) in trainer.ledgers.items()}
    state = digests(trainer)
    result["model_sha256"], result["optimizer_sha256"] = state["model"], state["optimizer"]
    trainer.train(1)
    result["saved"] = str(trainer.save())
    return result


def evaluate(params: dict[str, Any]) -> dict[str, Any]:
    """Load a checkpoint's weights; evaluate several shardings (one shard per rank) of the eval set."""
    trainer = make_trainer(params)
    trainer.load_weights(params["checkpoint"])
    rank = trainer.ctx.rank
    return {
        "metrics": [
            trainer.evaluate(shards[rank] if rank < len(shards) else [])
            for shards in params["shardings"]
        ]
    }


def accumulation(params: dict[str, Any]) -> dict[str, Any]:
    """Train with deferred and with per-micro-step gradient sync; count gradient reduce-scatters."""
    calls = {"n": 0}
    original = dist.reduce_scatter_single

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return original(*args, **kwargs)

    dist.reduce_scatter_single = counting
    states, counts, losses = [], [], []
    try:
        for defer in (True, False):
            trainer = make_trainer(params, defer_grad_sync=defer)
            calls["n"] = 0
            losses.append([r.loss for r in trainer.train(params["steps"])])
            counts.append(calls["n"])
            states.append(trainer.full_state()["model"])
    finally:
        dist.reduce_scatter_single = original
    diffs = torch.cat(
        [(a.double() - states[1][k].double()).abs().flatten() for k, a in states[0].items()]
    )
    max_diff, p99 = float(diffs.max()), float(diffs.quantile(0.99))
    bitwise = all(torch.equal(a, states[1][k]) for k, a in states[0].items())
    return {
        "reduce_scatters": counts,
        "max_abs_diff": max_diff,
        "p99_abs_diff": p99,
        "bitwise": bitwise,
        "losses": losses,
    }


def micro_steps(params: dict[str, Any]) -> dict[str, Any]:
    """Split an optimizer step with train_micro(); a save in between must be refused, untouched."""
    whole = make_trainer(params)
    expected = [(r.loss, r.samples) for r in whole.train(2)], digests(whole)
    split = make_trainer({**params, "run_id": params["run_id"] + "-split"})
    records = split.train(1)
    bad_counts = []
    for count in (0, params["accumulation_steps"]):
        try:
            split.train_micro(count)
        except ValueError:
            bad_counts.append(count)
    split.train_micro(1)
    before = digests(split)
    try:
        split.save()
        refusal = None
    except MidAccumulationError as exc:
        refusal = str(exc)
    unchanged = (
        digests(split) == before
        and not Path(params["output_dir"], params["run_id"] + "-split").exists()
    )
    records += split.train(1)
    return {
        "refusal": refusal,
        "unchanged": unchanged,
        "bad_counts": bad_counts,
        "same_as_whole": ([(r.loss, r.samples) for r in records], digests(split)) == expected,
        "saved_after": split.save().name,
    }


def heap_loop(params: dict[str, Any]) -> dict[str, Any]:
    """The set-up of the heap-corruption report (issue 12): repeated full-state all-gathers
    digested zero-copy, and saves whose every write is hashed on the helper thread. Two digests
    of the same state must agree (a read of freed or reused memory would not, under
    MALLOC_PERTURB_)."""
    from ckptspec.checkpointing import hashing_writer

    hashing_writer.CONCURRENT_HASH_BYTES = 1  # every chunk crosses to the helper thread
    trainer = make_trainer(params, keep_last=2)
    unstable = []
    for _ in range(params["iterations"]):
        trainer.train(1)
        if digests(trainer) != digests(trainer):
            unstable.append(trainer.global_step)
        trainer.save()
    return {"unstable_steps": unstable, "steps": trainer.global_step}


SCENARIOS = {
    "reshard": reshard,
    "evaluate": evaluate,
    "accumulation": accumulation,
    "micro_steps": micro_steps,
    "heap_loop": heap_loop,
}

if __name__ == "__main__":
    out, raw = sys.argv[1:3]
    results = {name: SCENARIOS[name](params) for name, params in json.loads(raw).items()}
    Path(out, f"rank{dist.get_rank()}.json").write_text(json.dumps(results))
    exit_process(0)
