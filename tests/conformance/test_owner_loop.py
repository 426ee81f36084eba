"""The owner-loop bridge (conformance/owner_loop.py) without a framework: the toy owner loop of
conformance/examples/owner_loop_toy.py (shown in docs/conformance.md), driven the way the suite
drives an adapter, plus loops that fail, hang or end early."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest

from ckptspec.conformance.adapter import RankContext, ScenarioConfig, declarations
from ckptspec.conformance.examples.owner_loop_toy import ToyAdapter, ToyTrainer
from ckptspec.conformance.owner_loop import OwnerLoopEnded, OwnerLoopTimeout

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "conformance" / "examples" / "owner_loop_toy.py"
DOC = ROOT / "docs" / "conformance.md"
CTX = RankContext(rank=0, world_size=1, local_rank=0, device="cpu")


def _adapter(tmp_path: Path, cls: type = ToyAdapter, **config: Any) -> Any:
    return cls(ScenarioConfig(output_dir=str(tmp_path), run_id="run", **config), CTX)


def _weight_after(steps: int) -> float:
    weight = 0.0
    for step in range(steps):
        weight = weight * 0.5 + step + 1
    return weight


def test_docs_show_the_owner_loop_example() -> None:
    match = re.search(
        r"<!-- begin owner_loop_toy.py -->\n```python\n(.*?)```\n<!-- end owner_loop_toy.py -->",
        DOC.read_text(),
        re.S,
    )
    assert match, "docs/conformance.md lacks the marked owner_loop_toy.py block"
    assert match.group(1) == EXAMPLE.read_text(), (
        "docs/conformance.md and conformance/examples/owner_loop_toy.py differ"
    )


def test_owner_loop_declarations() -> None:
    declared = declarations(ToyAdapter)
    assert (
        declared.saves_at_step_ends_only
        and declared.eval_sharding == "framework"
        and declared.native
    )
    assert not declared.restore_on_first_batch


def test_train_parks_at_each_step_end_without_running_ahead(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    try:
        records = adapter.train(3)
        assert [r.step for r in records] == [1, 2, 3] and adapter.step == 3
        assert adapter.trainer.step == 3, "the loop ran past the step end the suite asked for"
        assert adapter.full_state()["model"]["weight"] == _weight_after(3)
        path = adapter.save()
        assert Path(path).name == "checkpoint-3.json" and adapter.save() == path
        assert [r.step for r in adapter.train(2)] == [4, 5]
        assert adapter.full_state()["data_position"]["step"] == 5
    finally:
        adapter.close()
    assert adapter._thread is None


def test_resume_continues_from_the_checkpoint_not_step_0(tmp_path: Path) -> None:
    first = _adapter(tmp_path)
    try:
        first.train(2)
        first.save()
        first.train(2)
        first.save()
    finally:
        first.close()
    second = _adapter(tmp_path)
    try:
        assert second.resume(None) == 4, "resume(None) must load the latest checkpoint"
        assert [r.step for r in second.train(1)] == [5]
        assert second.full_state()["model"]["weight"] == _weight_after(5)
        assert second.resume(str(tmp_path / "run" / "checkpoint-2.json")) == 2
        assert [r.step for r in second.train(1)] == [3]
    finally:
        second.close()


def test_fit_runs_the_frameworks_loop_to_total_steps(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, total_steps=4)
    try:
        assert [r.step for r in adapter.fit()] == [1, 2, 3, 4]
        # the finished loop's state, not a fresh loop's
        assert adapter.full_state()["data_position"]["step"] == 4
        assert adapter.full_state()["model"]["weight"] == _weight_after(4)
        assert adapter.declared_checkpoints() == {}, (
            "fit() saves only where the framework is told to"
        )
        with pytest.raises(RuntimeError, match="saves only at a step end.*fit_end"):
            adapter.save()
    finally:
        adapter.close()


def test_save_outside_a_step_end_is_refused_clearly(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path)
    try:
        adapter.resume(None)
        with pytest.raises(RuntimeError, match="saves only at a step end.*train_begin"):
            adapter.save()
    finally:
        adapter.close()


class _Failing(ToyAdapter):
    def run_loop(self, checkpoint: str | None, max_steps: int | None) -> None:
        raise KeyError("the framework refused the checkpoint")


def test_an_exception_in_the_loop_reaches_the_suites_call(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, _Failing)
    with pytest.raises(KeyError, match="refused the checkpoint"):
        adapter.resume(None)
    adapter.close()


class _Hanging(ToyAdapter):
    deadline_s = 0.5
    released = threading.Event()

    def run_loop(self, checkpoint: str | None, max_steps: int | None) -> None:
        self.park("train_begin", 0)
        self.released.wait()  # never reaches a step end (a rank stuck in the framework)


def test_a_loop_that_never_reaches_a_step_end_fails_the_call_with_a_deadline(
    tmp_path: Path,
) -> None:
    adapter = _adapter(tmp_path, _Hanging)
    try:
        with pytest.raises(
            OwnerLoopTimeout,
            match=r"rank 0: .* did not reach 'step_end' within 0.5s "
            r"\(last event: train_begin at step 0\)",
        ):
            adapter.train(1)
    finally:
        _Hanging.released.set()
        adapter.close()


def test_train_past_the_loops_end_says_so(tmp_path: Path) -> None:
    class Bounded(ToyAdapter):
        def run_loop(self, checkpoint: str | None, max_steps: int | None) -> None:
            super().run_loop(checkpoint, 2)

    adapter = _adapter(tmp_path, Bounded)
    try:
        with pytest.raises(OwnerLoopEnded, match="finished at step 2 before reaching 'step_end'"):
            adapter.train(3)
    finally:
        adapter.close()


def test_evaluate_hands_the_global_ids_to_the_framework(tmp_path: Path) -> None:
    seen: list[list[int]] = []

    class Evaluating(ToyAdapter):
        def evaluate_global(self, global_ids: Any) -> dict[str, float] | None:
            assert threading.current_thread().name == "owner-loop-rank-0", (
                "evaluate must run on the loop thread"
            )
            seen.append(list(global_ids))
            return {"n": float(len(global_ids))} if global_ids else None

    adapter = _adapter(tmp_path, Evaluating)
    try:
        adapter.train(1)
        assert adapter.evaluate([3, 1, 2]) == {"n": 3.0} and adapter.evaluate([]) is None
        assert seen == [[3, 1, 2], []]
        assert [r.step for r in adapter.train(1)] == [2], (
            "evaluate must leave the loop parked where it was"
        )
    finally:
        adapter.close()


def test_toy_trainer_alone_saves_when_asked(tmp_path: Path) -> None:
    """The toy framework itself (no bridge): a callback's ``should_save`` writes that step."""

    class SaveTwo:
        def on_train_begin(self, trainer: ToyTrainer) -> None: ...
        def on_step_end(self, trainer: ToyTrainer, control: dict[str, bool]) -> None:
            control["should_save"] = trainer.step == 2

        def on_save(self, trainer: ToyTrainer, path: str) -> None:
            saved.append(path)

    saved: list[str] = []
    ToyTrainer(tmp_path, [SaveTwo()], 3).train()
    assert [Path(p).name for p in saved] == ["checkpoint-2.json"]


def test_best_checkpoint_defaults_to_the_run_index_and_is_overridable(tmp_path: Path) -> None:
    from ckptspec.conformance.adapter import TrainerAdapter

    config = ScenarioConfig(output_dir=str(tmp_path), run_id="run")
    assert declarations(TrainerAdapter).best_checkpoint(config) is None
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text('{"best": {"step": 3, "metric": "mse"}}')
    assert declarations(TrainerAdapter).best_checkpoint(config) == 3
    native = type("Native", (TrainerAdapter,), {"best_checkpoint": staticmethod(lambda config: 7)})
    assert declarations(native).best_checkpoint(config) == 7


@pytest.mark.parametrize(
    "attribute,value,message",
    [
        ("eval_sharding", "mine", "eval_sharding 'mine'"),
        ("saves_at_step_ends_only", 1, "`saves_at_step_ends_only` must be a bool"),
        ("best_checkpoint", 3, "`best_checkpoint` must be a static method"),
    ],
)
def test_malformed_owner_loop_declarations_are_named(
    attribute: str, value: object, message: str
) -> None:
    from ckptspec.conformance.adapter import TrainerAdapter

    with pytest.raises(ValueError, match=re.escape(message)):
        declarations(type("Bad", (TrainerAdapter,), {attribute: value}))
