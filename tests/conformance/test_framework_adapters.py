"""Smoke test of the framework adapters (conformance/adapters/): each builds in a real 2-rank gloo
group, trains 2 steps and saves with its framework's own checkpointing; a second launch resumes
from the trainer's own latest; the discovery hook finds the checkpoint at the step it was saved.

Skipped, with the reason, where the framework is not installed (``make`` installs the ``frameworks`` extra).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ckptspec.conformance.adapter import ScenarioConfig, TrainerAdapter, declarations, load_adapter
from ckptspec.conformance.engine import run_phase
from ckptspec.conformance.phase import PhaseSpec, Resume, Save, Train

FRAMEWORKS = {
    "accelerate_trainer": "accelerate",
    "lightning_trainer": "lightning",
    "torchtitan_trainer": "torchtitan",
}


@pytest.mark.slow
@pytest.mark.frameworks
@pytest.mark.parametrize("module", sorted(FRAMEWORKS))
def test_adapter_trains_saves_and_resumes(module: str, tmp_path: Path) -> None:
    framework = FRAMEWORKS[module]
    if importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} is not installed (`make` installs it: the `frameworks` extra)")
    spec = f"ckptspec.conformance.adapters.{module}:Adapter"
    adapter = load_adapter(spec)
    declared = declarations(adapter)
    assert (
        issubclass(adapter, TrainerAdapter)
        and declared.native
        and declared.framework.startswith(framework)
    )
    config = ScenarioConfig(output_dir=str(tmp_path / "out"), run_id="smoke", accumulation_steps=2)

    saved = run_phase(PhaseSpec(spec, config, 2, (Train(2), Save())), tmp_path / "save")
    assert not saved.missing and not saved.errors(), saved.describe()
    path = saved.value(1, rank=0)
    assert {saved.value(1, rank=r) for r in (0, 1)} == {path}, (
        "ranks returned different checkpoint paths"
    )
    assert declared.checkpoints(config) == {2: path}

    resumed = run_phase(PhaseSpec(spec, config, 2, (Resume(None),)), tmp_path / "resume")
    assert not resumed.missing and not resumed.errors(), resumed.describe()
    assert [resumed.value(0, rank=r) for r in (0, 1)] == [2, 2]


def test_fault_layer_numbers_a_move_into_the_root_from_outside(tmp_path: Path) -> None:
    """fsspec's transactions (Lightning's ``_atomic_save``) stage a file in ``$TMPDIR`` and move it
    into place: the move is the save's only mutation under the run directory, so it must be
    numbered (else no crash point or injected error can land) and must not show the temporary name."""
    import errno
    import os

    from ckptspec.conformance.faults import OUTSIDE_ROOT, interpose
    from ckptspec.conformance.phase import Fault

    root, outside = tmp_path / "root", tmp_path / "staging"
    root.mkdir()
    outside.mkdir()
    (outside / "tmp1234").write_bytes(b"a")
    (outside / "tmp5678").write_bytes(b"b")
    with interpose(str(root), Fault("oserror", 0, 2), 0, lambda _: None) as log:
        os.rename(outside / "tmp1234", root / "step-1.ckpt")
        with pytest.raises(OSError) as raised:
            os.replace(outside / "tmp5678", root / "step-2.ckpt")
        os.rename(
            outside / "tmp5678", outside / "elsewhere"
        )  # outside to outside: not the root's business
    assert raised.value.errno == errno.EIO
    assert [str(m) for m in log] == [
        f"rename({OUTSIDE_ROOT} -> step-1.ckpt)",
        f"replace({OUTSIDE_ROOT} -> step-2.ckpt)",
    ]
    assert (root / "step-1.ckpt").read_bytes() == b"a" and not (root / "step-2.ckpt").exists()


def test_injected_eio_is_not_absorbed_by_a_fallback(tmp_path: Path) -> None:
    """An injected EIO stays (a failed device): ``shutil.move``'s copy after a failed ``rename``,
    which fsspec's commit relies on, fails too, so the save fails instead of silently recovering."""
    import errno
    import shutil

    from ckptspec.conformance.faults import interpose
    from ckptspec.conformance.phase import Fault

    root, staged = tmp_path / "root", tmp_path / "tmp1234"
    root.mkdir()
    staged.write_bytes(b"checkpoint")
    with interpose(str(root), Fault("oserror", 0, 1), 0, lambda _: None) as log:
        with pytest.raises(OSError) as raised:
            shutil.move(staged, root / "step-1.ckpt")
    assert raised.value.errno == errno.EIO
    assert [m.op for m in log] == ["rename", "open"]  # the rename, then the fallback's copy
    assert not (root / "step-1.ckpt").exists() and staged.read_bytes() == b"checkpoint"
