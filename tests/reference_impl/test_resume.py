"""The reference trainer on real process groups (gloo), every phase in fresh processes.

Bit-exact resume, crash consistency, best/retention/rewind, idempotence, drift, resharding,
integrity, evaluation with empty shards, deferred gradient sync. Process start-up dominates the
cost, so each test combines several checks on the same runs: the step log of a run records,
per step, the loss, the learning rate and the canonical digests of the full parameters and
optimizer state.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from refimpl_launch import (
    assert_identical,
    assert_valid,
    manifest,
    snapshot,
    step_log,
    train,
    worker,
)

STEPS = ["--steps", "6", "--save-every", "2", "--eval-every", "2"]
FIVE, FOUR = list(range(5)), list(range(4))


def assert_same_after(full: dict[int, dict], cut: dict[int, dict], first: int) -> None:
    """Losses, learning rates, parameters and optimizer state equal at every step from ``first``."""
    for step in range(first, 7):
        assert cut[step] == full[step], f"step {step} differs after the resume"


RANK_LOCAL = ["node_ledger", "pair_ledger", "rng"]


def assert_grouped(checkpoint: Path, node_size: int, pair_size: int, samples: int) -> None:
    """The checkpoint lists the data ledgers as per_node/per_group components with a file for
    every group, and each group's ledger counts the samples its ranks consumed."""
    document = manifest(checkpoint)
    world = document["topology"]["world_size"]
    grouped = {
        c["name"]: c for c in document["components"] if c["sharing"] in ("per_node", "per_group")
    }
    assert {n: (c["sharing"], c["group_size"], c["reshardable"]) for n, c in grouped.items()} == {
        "node_ledger": ("per_node", node_size, False),
        "pair_ledger": ("per_group", pair_size, False),
    }
    for name, component in grouped.items():
        size = component["group_size"]
        files = [(f["path"], f["group"], f["ranks"]) for f in component["files"]]
        assert files == [
            (f"{name}/group-{g:05d}.json", g, list(range(g * size, (g + 1) * size)))
            for g in range(world // size)
        ]
        ledgers = [json.loads((checkpoint / path).read_text()) for path, _, _ in files]
        assert [ledger["samples"] for ledger in ledgers] == [samples * size // world] * (
            world // size
        )
        assert len({ledger["ids_digest"] for ledger in ledgers}) == world // size


def eval_losses(stdout: str) -> dict[int, float]:
    return {
        int(m[1]): float(m[2]) for m in re.finditer(r"eval  step\s+(\d+) \| loss ([0-9.]+)", stdout)
    }


@pytest.mark.slow
def test_two_ranks_crash_during_save_best_retention_reshard_integrity_and_eval(
    tmp_path: Path,
) -> None:
    acc = ["--accumulation-steps", "2"]
    # the reference run saves asynchronously: its checkpoints must equal the synchronous ones
    train(
        2,
        tmp_path,
        "full",
        *STEPS,
        *acc,
        "--async-save",
        "--step-log",
        str(tmp_path / "full.jsonl"),
    )
    cut_args = [*STEPS, *acc, "--best-metric", "loss", "--best-mode", "max", "--keep-last", "1"]
    run = tmp_path / "cut"

    # 1. plain SIGKILL after step 3: step 2 is the latest committed checkpoint
    killed = train(2, tmp_path, "cut", *cut_args, "--crash-at-step", "3", expect=None)
    evals = eval_losses(killed.stdout)
    step2 = snapshot(run / "step-000000002")

    # 2. first resume, then SIGKILL in the middle of committing step 4
    train(2, tmp_path, "cut", *cut_args, "--crash-during-save", "4", expect=None)
    staging = [p for p in run.iterdir() if p.name.startswith(".staging-step-000000004-")]
    assert len(staging) == 1 and (staging[0] / "manifest.json").is_file(), (
        "the crash should leave a staged save"
    )
    assert not (run / "step-000000004").exists()
    assert json.loads((run / "run.json").read_text())["latest_step"] == 2
    assert snapshot(run / "step-000000002") == step2, "earlier checkpoints must be untouched"
    assert_valid(run)

    # 3. second resume: from step 2 again, to the end
    resumed = train(2, tmp_path, "cut", *cut_args, "--step-log", str(tmp_path / "cut.jsonl"))
    evals.update(eval_losses(resumed.stdout))
    assert not any(p.name.startswith(".staging-") for p in run.iterdir()), (
        "stale staging directory not cleaned"
    )
    assert_same_after(step_log(tmp_path / "full.jsonl"), step_log(tmp_path / "cut.jsonl"), first=3)
    assert_identical(tmp_path / "full" / "step-000000006", run / "step-000000006")
    final = manifest(run / "step-000000006")
    assert final["resumed_from"] == {"step": 2, "world_size": 2, "elastic": False, "rederived": []}
    assert_grouped(
        run / "step-000000006", node_size=2, pair_size=2, samples=6 * 12
    )  # restored at step 2, then 4 steps

    # best (mode max over eval loss) survived the restarts; retention kept latest + best only
    best_step = max(sorted(evals), key=lambda s: evals[s])  # first step with the highest loss
    index = json.loads((run / "run.json").read_text())
    assert index["best"]["step"] == best_step and index["best"]["score"] == pytest.approx(
        evals[best_step], abs=1e-6
    )
    assert sorted(p.name for p in run.glob("step-*")) == sorted(
        {f"step-{best_step:09d}", "step-000000006"}
    )
    assert_valid(tmp_path / "full", run)

    # world-size change 2 -> 3 and 2 -> 1: strict fails naming rng with nothing loaded (also on
    # a corrupted copy: integrity), elastic reshards bitwise; then the same weights are evaluated
    # with empty shards on 3 ranks and in one process
    checkpoint = str(tmp_path / "full" / "step-000000002")
    expected = step_log(tmp_path / "full.jsonl")[2]
    common = {"output_dir": str(tmp_path), "steps": 6, "accumulation_steps": 2}
    three_shardings = [[[], FIVE, []], [FOUR, [], []], [[0, 1], [2, 3], [4]], [[], [], []]]
    metrics = {}
    for nproc, corrupt, shardings in (
        (3, False, three_shardings),
        (1, True, [[FIVE], [FOUR], [FIVE], [[]]]),
    ):
        results = worker(
            nproc,
            tmp_path / f"w{nproc}",
            reshard={
                **common,
                "run_id": f"to{nproc}",
                "checkpoint": checkpoint,
                "corrupt": corrupt,
            },
            evaluate={
                **common,
                "run_id": f"eval{nproc}",
                "checkpoint": checkpoint,
                "shardings": shardings,
            },
        )
        for r in results:
            strict = r["reshard"]["strict"]
            assert (
                strict["components"] == RANK_LOCAL
                and "pair_ledger" in strict["error"]
                and strict["unchanged"]
            )
            assert all(
                ledger["since_step"] == 2 and ledger["samples"] == 0
                for ledger in r["reshard"]["ledgers"].values()
            )
            if corrupt:
                assert (
                    "FILE_DIGEST_MISMATCH" in r["reshard"]["integrity"]["error"]
                    and r["reshard"]["integrity"]["unchanged"]
                )
            assert (r["reshard"]["model_sha256"], r["reshard"]["optimizer_sha256"]) == (
                expected["model_sha256"],
                expected["optimizer_sha256"],
            )
            assert r["evaluate"]["metrics"] == results[0]["evaluate"]["metrics"], (
                "eval metrics differ across ranks"
            )
        saved = Path(results[0]["reshard"]["saved"])
        assert manifest(saved)["resumed_from"] == {
            "step": 2,
            "world_size": 2,
            "elastic": True,
            "rederived": RANK_LOCAL,
        }
        assert_grouped(
            saved, node_size=nproc, pair_size=1, samples=12
        )  # new ledgers from step 2, one step since
        assert_valid(saved.parent)
        metrics[nproc] = results[0]["evaluate"]["metrics"]
    on_five, on_four, on_five_split, empty = metrics[3]
    assert empty is None, "an empty eval set must yield no metrics"
    assert on_five_split == on_five and on_five != on_four, (
        "metrics must not depend on the sharding"
    )
    assert metrics[1] == [on_five, on_four, on_five, None], (
        "3-rank metrics must equal one process's, bitwise"
    )


@pytest.mark.slow
def test_three_ranks_resume_reshard_to_two_and_deferred_sync(tmp_path: Path) -> None:
    train(3, tmp_path, "full", *STEPS, "--step-log", str(tmp_path / "full.jsonl"))
    train(3, tmp_path, "cut", *STEPS, "--crash-at-step", "3", expect=None)
    train(3, tmp_path, "cut", *STEPS, "--step-log", str(tmp_path / "cut.jsonl"))
    full = step_log(tmp_path / "full.jsonl")
    assert_same_after(full, step_log(tmp_path / "cut.jsonl"), first=3)
    assert_identical(tmp_path / "full" / "step-000000006", tmp_path / "cut" / "step-000000006")
    assert_valid(tmp_path / "full", tmp_path / "cut")
    assert_grouped(tmp_path / "cut" / "step-000000006", node_size=3, pair_size=1, samples=6 * 12)

    # 3 -> 2 reshard; in the same processes, deferred vs per-micro-step gradient sync
    results = worker(
        2,
        tmp_path / "w2",
        reshard={
            "output_dir": str(tmp_path),
            "run_id": "to2",
            "steps": 6,
            "checkpoint": str(tmp_path / "full" / "step-000000002"),
        },
        accumulation={
            "output_dir": str(tmp_path),
            "run_id": "acc",
            "steps": 3,
            "accumulation_steps": 2,
        },
        micro_steps={
            "output_dir": str(tmp_path),
            "run_id": "micro",
            "steps": 3,
            "accumulation_steps": 3,
        },
    )
    for r in results:
        strict = r["reshard"]["strict"]
        assert strict["components"] == RANK_LOCAL and strict["unchanged"]
        assert (r["reshard"]["model_sha256"], r["reshard"]["optimizer_sha256"]) == (
            full[2]["model_sha256"],
            full[2]["optimizer_sha256"],
        )
    assert_valid(Path(results[0]["reshard"]["saved"]).parent)
    acc = results[0]["accumulation"]
    deferred, every = acc["reduce_scatters"]
    assert deferred > 0 and every == 2 * deferred, (
        "deferral should halve the gradient reduce-scatters"
    )
    # not bitwise: the cross-rank sum of per-micro-step gradients rounds differently
    assert acc["p99_abs_diff"] < 1e-6 and acc["max_abs_diff"] < 1e-3
    assert acc["losses"][0] == pytest.approx(acc["losses"][1], rel=1e-6, abs=0)
    for r in results:  # RESUME-9: a save between micro-batches is refused and changes nothing
        micro = r["micro_steps"]
        assert (
            micro["refusal"] and "SAVE_MID_ACCUMULATION" in micro["refusal"] and micro["unchanged"]
        )
        assert (
            micro["bad_counts"] == [0, 3]
            and micro["same_as_whole"]
            and micro["saved_after"] == "step-000000002"
        )


@pytest.mark.slow
def test_one_process_resume_idempotence_drift_and_rewind(tmp_path: Path) -> None:
    args = [
        "--steps",
        "6",
        "--save-every",
        "1",
        "--eval-every",
        "1",
        "--accumulation-steps",
        "3",
        "--best-metric",
        "loss",
    ]
    train(1, tmp_path, "a", *args, "--step-log", str(tmp_path / "a.jsonl"))
    train(1, tmp_path, "b", *args, "--crash-at-step", "3", expect=None)
    train(1, tmp_path, "b", *args, "--step-log", str(tmp_path / "b.jsonl"))
    assert_same_after(step_log(tmp_path / "a.jsonl"), step_log(tmp_path / "b.jsonl"), first=3)
    assert_identical(tmp_path / "a" / "step-000000006", tmp_path / "b" / "step-000000006")

    # idempotent restart: no training, nothing written
    run = tmp_path / "a"
    before = snapshot(run)
    again = train(1, tmp_path, "a", *args)
    assert "train step" not in again.stdout and snapshot(run) == before

    # config drift: fails naming every differing key, nothing written
    drift = train(
        1, tmp_path, "a", *args, "--accumulation-steps", "1", "--global-batch-size", "6", expect=2
    )
    assert (
        "ConfigDriftError" in drift.stderr
        and "accumulation_steps" in drift.stderr
        and "global_batch_size" in drift.stderr
    )
    assert snapshot(run) == before

    # rewind: resuming step 2 and saving step 3 moves steps 3..6 aside and clears a best among
    # them (the eval at step 3 then becomes the best); the new timeline repeats the old one
    best_before = json.loads((run / "run.json").read_text())["best"]
    train(
        1,
        tmp_path,
        "a",
        *args,
        "--resume",
        str(run / "step-000000002"),
        "--crash-at-step",
        "5",
        expect=None,
    )
    index = json.loads((run / "run.json").read_text())
    (rewind,) = index["rewinds"]
    assert rewind["discarded_steps"] == [3, 4, 5, 6] and rewind["resumed_from_step"] == 2
    moved = run / rewind["moved_to"]
    assert sorted(p.name for p in moved.iterdir()) == [f"step-00000000{s}" for s in (3, 4, 5, 6)]
    assert sorted(p.name for p in run.glob("step-*")) == [f"step-00000000{s}" for s in (1, 2, 3, 4)]
    if best_before["step"] > 4:
        assert index["best"]["step"] in (3, 4), (
            "a best record inside the rewound steps must be cleared"
        )
    assert_identical(moved / "step-000000004", run / "step-000000004")
    assert_valid(run, tmp_path / "b")
