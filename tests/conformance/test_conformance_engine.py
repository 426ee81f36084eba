"""The scenario engine against a throwaway adapter: results, trainer errors, hangs, crash points."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ckptspec.conformance.adapter import ScenarioConfig
from ckptspec.conformance.engine import run_phase
from ckptspec.conformance.gate import Gate
from ckptspec.conformance.phase import (
    Evaluate,
    Fault,
    FullState,
    Hold,
    PhaseSpec,
    Resume,
    Save,
    Train,
)

TOY = "toy_adapter:ToyAdapter"

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, **extra: object) -> ScenarioConfig:
    return ScenarioConfig(
        output_dir=str(tmp_path / "out"), run_id="run", global_batch_size=4, extra=dict(extra)
    )


def test_actions_run_in_order_and_results_come_back(tmp_path: Path) -> None:
    spec = PhaseSpec(
        TOY,
        _config(tmp_path),
        2,
        (Train(2), FullState(), Save(Fault("count")), Evaluate(((1, 2), ()))),
    )
    result = run_phase(spec, tmp_path / "phase")
    assert result.describe() == "ok"
    records = result.value(0, 1)
    assert [r[0] for r in records] == [1, 2] and records[0][3] == (2, 3)
    assert result.value(1, 0)["model/weight"] == result.value(1, 1)["model/weight"]
    assert [m.op for m in result.results(2)[0].mutations][-1] == "rename"
    assert result.value(3, 0) == result.value(3, 1) is not None


def test_trainer_errors_are_data_and_may_fail_continues(tmp_path: Path) -> None:
    spec = PhaseSpec(
        TOY,
        _config(tmp_path, raise_in="resume"),
        2,
        (Resume(None), FullState()),
        may_fail=frozenset({0}),
    )
    result = run_phase(spec, tmp_path / "phase")
    errors = result.errors()
    assert {(r, name) for r, name, _ in errors} == {(0, "resume"), (1, "resume")}
    assert errors[0][2].type == "builtins.ValueError" and not errors[0][2].is_checkpoint_error
    assert result.results(1)[0].ok  # the action after an allowed failure ran


def test_hang_is_killed_and_named(tmp_path: Path) -> None:
    spec = PhaseSpec(
        TOY, _config(tmp_path, hang_eval_rank=1), 2, (Evaluate(((1,), ())),), timeout_s=20
    )
    result = run_phase(spec, tmp_path / "phase")
    assert result.timed_out and 1 in result.missing
    assert "evaluate" in result.progress[1]
    assert result.seconds < 60


def test_kill_fault_stops_the_rank_at_its_crash_point(tmp_path: Path) -> None:
    spec = PhaseSpec(TOY, _config(tmp_path), 2, (Train(1), Save(Fault("kill", rank=0, at=2))))
    result = run_phase(spec, tmp_path / "phase")
    assert 0 in result.missing and not result.timed_out
    assert "SIGKILL before mutation 2" in result.progress[0]
    assert not (tmp_path / "out" / "run" / "step-000000001").exists()


def test_a_rank_dying_by_a_signal_comes_back_with_its_output(tmp_path: Path) -> None:
    config = _config(tmp_path, abort_in="train", abort_rank=1)
    result = run_phase(PhaseSpec(TOY, config, 2, (Train(1),), timeout_s=30), tmp_path / "phase")
    assert 1 in result.missing and list(result.crashed) == [1]
    assert (
        "died by SIGABRT" in result.crashed[1] and "toy rank 1 aborts in train" in result.crashed[1]
    )
    assert (
        "most recent call first" in result.crashed[1]
    )  # faulthandler: the dying rank's Python stack


def _harness(tmp_path: Path) -> Any:
    from ckptspec.conformance.harness import Harness
    from ckptspec.conformance.options import PROFILES

    (tmp_path / "shared").mkdir()
    return Harness(TOY, PROFILES["quick"], tmp_path / "shared", tmp_path / "private")


def test_a_crash_that_reproduces_is_the_trainers_failure(tmp_path: Path) -> None:
    from ckptspec.conformance.harness import TrainerCrashed

    with pytest.raises(
        TrainerCrashed, match="(?s)the trainer crashed.*SIGABRT.*toy rank 1 aborts in train"
    ):
        _harness(tmp_path).phase(_config(tmp_path, abort_in="train", abort_rank=1), 2, [Train(1)])


def test_a_crash_that_does_not_reproduce_is_a_flaky_environment(tmp_path: Path) -> None:
    from ckptspec.conformance.harness import HarnessError

    h = _harness(tmp_path)
    h.phase(
        _config(tmp_path), 2, [Train(1), Save()]
    )  # step 1, committed before the phase that crashes once
    config = _config(
        tmp_path, abort_in="save", abort_rank=1, abort_once=str(tmp_path / "aborted-once")
    )
    with pytest.raises(HarnessError, match="flaky environment"):
        h.phase(config, 2, [Resume(None), Train(1), Save()])
    # the rerun started from the state before the first attempt, and completed
    assert sorted(p.name for p in (tmp_path / "out" / "run").iterdir()) == [
        "step-000000001",
        "step-000000002",
    ]


def test_mismatched_collectives_are_not_a_harness_error(tmp_path: Path) -> None:
    from ckptspec.conformance.harness import TrainerCrashed

    try:
        result = _harness(tmp_path).phase(_config(tmp_path, mismatch_in="train"), 2, [Train(1)])
    except TrainerCrashed:
        return
    assert result.errors() or result.missing, result.describe()


def test_an_injected_kill_is_not_a_crash(tmp_path: Path) -> None:
    spec = PhaseSpec(TOY, _config(tmp_path), 2, (Train(1), Save(Fault("kill", rank=0, at=1))))
    result = run_phase(spec, tmp_path / "phase")
    assert 0 in result.missing and not result.crashed


def test_two_nodes_run_as_one_job_with_their_own_local_ranks(tmp_path: Path) -> None:
    spec = PhaseSpec(TOY, _config(tmp_path), 2, (Train(2), FullState()), nodes=2)
    result = run_phase(spec, tmp_path / "phase")
    assert result.describe() == "ok"
    assert (
        result.value(1, 0)["model/weight"] == result.value(1, 1)["model/weight"]
    )  # one process group over both nodes
    # one launcher log folder per node, each holding its single rank as local rank 0
    assert sorted(
        str(p.relative_to(tmp_path / "phase" / "logs")).split("/")[::3]
        for p in (tmp_path / "phase" / "logs").glob("*/*/attempt_0/*")
    ) == [["agent-0", "0"], ["agent-1", "0"]]


def test_a_crash_on_the_second_node_comes_back_with_that_ranks_output(tmp_path: Path) -> None:
    config = _config(tmp_path, abort_in="train", abort_rank=1)
    result = run_phase(
        PhaseSpec(TOY, config, 2, (Train(1),), timeout_s=30, nodes=2), tmp_path / "phase"
    )
    assert 1 in result.missing and list(result.crashed) == [1]
    assert (
        "died by SIGABRT" in result.crashed[1] and "toy rank 1 aborts in train" in result.crashed[1]
    )
    assert (
        "toy rank 0" not in result.crashed[1]
    )  # rank 1 is local rank 0 of its node: its own log, not rank 0's


@pytest.mark.parametrize("nodes", [0, 3])
def test_nodes_must_divide_the_world_size(tmp_path: Path, nodes: int) -> None:
    with pytest.raises(ValueError, match=f"world size 4 cannot run on {nodes} node"):
        PhaseSpec(TOY, _config(tmp_path), 4, (Train(1),), nodes=nodes)


def test_a_held_phase_waits_at_the_gate_until_released(tmp_path: Path) -> None:
    """Both sides of a Hold: rank 0 arrives, every rank waits until the test releases the gate,
    then the phase goes on; a gate whose phase has ended can no longer be released."""
    (tmp_path / "gate").mkdir()
    gate = Gate(tmp_path / "gate")
    spec = PhaseSpec(
        TOY, _config(tmp_path), 2, (Train(1), Hold(str(gate.directory)), Train(1)), timeout_s=120
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        phase = pool.submit(run_phase, spec, tmp_path / "phase")
        gate.watch(phase)
        try:
            assert gate.reached(), phase.result().describe()
            assert not phase.done()  # held: nothing returns before the release
            assert gate.release()
            result = phase.result()
        finally:
            gate.close()
    assert not result.missing and not result.errors(), result.describe()
    assert [result.results(2)[r].step for r in (0, 1)] == [2, 2]
    assert not gate.release()  # no rank waits at the gate any more
