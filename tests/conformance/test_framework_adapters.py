"""Smoke test of the framework adapters (conformance/adapters/): each builds in a real 2-rank gloo
group, trains 2 steps and saves with its framework's own checkpointing; a second launch resumes
from the trainer's own latest; the discovery hook finds the checkpoint at the step it was saved.

Skipped, with the reason, where the framework is not installed (``make frameworks``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ckptspec.conformance.adapter import ScenarioConfig, checkpoint_format, committed_checkpoints, load_adapter
from ckptspec.conformance.engine import run_phase
from ckptspec.conformance.phase import PhaseSpec, Resume, Save, Train

FRAMEWORKS = {"accelerate_trainer": "accelerate", "lightning_trainer": "lightning", "torchtitan_trainer": "torchtitan"}


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(FRAMEWORKS))
def test_adapter_trains_saves_and_resumes(module: str, tmp_path: Path) -> None:
    framework = FRAMEWORKS[module]
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed (install it with `make frameworks`)")
    spec = f"ckptspec.conformance.adapters.{module}:Adapter"
    adapter = load_adapter(spec)
    assert checkpoint_format(adapter) == "native"
    config = ScenarioConfig(output_dir=str(tmp_path / "out"), run_id="smoke", accumulation_steps=2)

    saved = run_phase(PhaseSpec(spec, config, 2, (Train(2), Save())), tmp_path / "save")
    assert not saved.missing and not saved.errors(), saved.describe()
    path = saved.value(1, rank=0)
    assert {saved.value(1, rank=r) for r in (0, 1)} == {path}, "ranks returned different checkpoint paths"
    assert committed_checkpoints(adapter, config) == {2: path}

    resumed = run_phase(PhaseSpec(spec, config, 2, (Resume(None),)), tmp_path / "resume")
    assert not resumed.missing and not resumed.errors(), resumed.describe()
    assert [resumed.value(0, rank=r) for r in (0, 1)] == [2, 2]
