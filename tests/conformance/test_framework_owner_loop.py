"""Smoke test of the owner-loop framework adapters (``hf_trainer``, ``lightning_pl_trainer``): in a
real 2-rank gloo group each evaluates uneven and empty shards through the framework's own
sampler, trains 2 steps and saves with the framework's own checkpointing; a second launch
resumes from the trainer's own latest at the saved step and continues at step 3. In the
frameworks tier, beside their quick profiles (``test_framework_conformance.py``); skipped where
the framework is not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ckptspec.conformance.adapter import ScenarioConfig, declarations, load_adapter
from ckptspec.conformance.engine import run_phase
from ckptspec.conformance.owner_loop import OwnerLoopAdapter
from ckptspec.conformance.phase import Evaluate, PhaseSpec, Resume, Save, Train

FRAMEWORKS = {"hf_trainer": "transformers", "lightning_pl_trainer": "lightning"}

pytestmark = [pytest.mark.slow, pytest.mark.frameworks]


@pytest.mark.parametrize("module", sorted(FRAMEWORKS))
def test_owner_loop_adapter_evaluates_trains_saves_and_resumes(module: str, tmp_path: Path) -> None:
    framework = FRAMEWORKS[module]
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed (the `frameworks` extra)")
    spec = f"ckptspec.conformance.adapters.{module}:Adapter"
    adapter = load_adapter(spec)
    declared = declarations(adapter)
    assert (
        issubclass(adapter, OwnerLoopAdapter)
        and declared.native
        and declared.saves_at_step_ends_only
    )
    config = ScenarioConfig(output_dir=str(tmp_path / "out"), run_id="smoke", accumulation_steps=2)
    evaluate = "eval" in declared.capabilities
    actions = ((Evaluate(((0, 1, 2), ())), Evaluate(((), ()))) if evaluate else ()) + (
        Train(2),
        Save(),
    )

    saved = run_phase(PhaseSpec(spec, config, 2, actions, timeout_s=600), tmp_path / "save")
    assert not saved.missing and not saved.errors(), saved.describe()
    if evaluate:
        metrics = [saved.value(0, rank=r) for r in (0, 1)]
        assert metrics[0] == metrics[1] and metrics[0] is not None, metrics
        assert [saved.value(1, rank=r) for r in (0, 1)] == [None, None]
    path = saved.value(len(actions) - 1, rank=0)
    assert {saved.value(len(actions) - 1, rank=r) for r in (0, 1)} == {path}
    assert declared.checkpoints(config) == {2: path}

    resumed = run_phase(
        PhaseSpec(spec, config, 2, (Resume(None), Train(1)), timeout_s=600), tmp_path / "resume"
    )
    assert not resumed.missing and not resumed.errors(), resumed.describe()
    assert [resumed.value(0, rank=r) for r in (0, 1)] == [2, 2]
    assert [[rec[0] for rec in resumed.value(1, rank=r)] for r in (0, 1)] == [
        [3],
        [3],
    ]  # (step, loss, lr, samples)
