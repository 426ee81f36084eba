"""The front-door example of docs/architecture.md runs as written on two gloo ranks: a second run
resumes bit-exactly from what the first committed, and a damaged checkpoint is refused."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from refimpl_launch import assert_valid, manifest, program

from ckptspec.checkpointing import Checkpointer, DistContext, PerRank, Replicated, Sharded
from ckptspec.errors import IntegrityError
from ckptspec.manifest import Progress

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
REPORT = """
import json
from ckptspec.checkpointing.distributed import exit_process
with open(f"rank{ctx.rank}.json", "w") as report:
    json.dump({"start": start, "params": [p.tolist() for p in model.parameters()], "position": position}, report)
exit_process(0)
"""
"""Appended to the example: each rank reports what it resumed at and where it ended."""


def example() -> str:
    match = re.search(
        r"<!-- begin front-door example -->\n```python\n(.*?)```\n<!-- end front-door example -->",
        DOC.read_text(),
        re.S,
    )
    assert match, "docs/architecture.md lacks the marked front-door example"
    return match.group(1)


def launch(directory: Path) -> subprocess.CompletedProcess[str]:
    """Run the example (and the report) on two ranks in ``directory``."""
    for stale in directory.glob("rank*.json"):
        stale.unlink()
    script = directory / "example.py"
    script.write_text(example() + REPORT)
    return program(2, script)


def run(directory: Path) -> list[dict[str, Any]]:
    """Run the example successfully; each rank's report."""
    proc = launch(directory)
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    )
    return [json.loads((directory / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow  # starts torch processes: not in `make test-fast`
def test_front_door_example_saves_resumes_and_refuses_damage(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "front-door"
    first = run(tmp_path)
    assert [r["start"] for r in first] == [0, 0]
    assert first[0]["params"] == first[1]["params"], "DDP replicas differ"
    assert sorted(p.name for p in run_dir.glob("step-*")) == ["step-000000003", "step-000000004"], (
        "keep_last=2 not applied"
    )
    assert_valid(run_dir)

    shutil.rmtree(
        run_dir / "step-000000004"
    )  # the second run resumes at step 3 and trains step 4 again
    second = run(tmp_path)
    assert [r["start"] for r in second] == [3, 3]
    for rank in range(
        2
    ):  # model, optimizer, RNG (the batch) and data position restored: step 4 is the same step
        assert second[rank]["params"] == first[rank]["params"], (
            f"rank {rank}: step 4 after the resume differs"
        )
        assert second[rank]["position"] == {"samples_seen": 32}
    assert manifest(run_dir / "step-000000004")["resumed_from"]["step"] == 3
    assert_valid(run_dir)

    shard = run_dir / "step-000000004" / "optimizer" / "__1_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    proc = launch(tmp_path)
    assert proc.returncode != 0, "a checkpoint with a damaged optimizer shard was resumed"
    assert "FILE_DIGEST_MISMATCH" in proc.stderr and "__1_0.distcp" in proc.stderr, proc.stderr[
        -4000:
    ]
    assert not list(tmp_path.glob("rank*.json")), "a rank went on past the refused resume"


def test_save_refuses_a_mismatched_step_or_an_unknown_component_before_any_io(
    tmp_path: Path,
) -> None:
    checkpointer = Checkpointer(
        tmp_path / "run", DistContext(0, 1, 0, torch.device("cpu")), {"model": "m"}
    )
    progress = Progress(
        global_step=2,
        epoch=0,
        batches_in_epoch=2,
        samples_in_epoch=4,
        samples_seen=4,
        accumulation_steps=1,
    )
    with pytest.raises(
        ValueError, match="progress.global_step is 2, but the checkpoint is of step 3"
    ):
        checkpointer.save(3, {"position": Replicated(dict, print)}, progress=progress)
    with pytest.raises(TypeError, match="component 'model' is a Linear"):
        checkpointer.save(2, {"model": torch.nn.Linear(1, 1)}, progress=progress)  # type: ignore[dict-item]
    assert not (tmp_path / "run").exists(), "a refused save touched the run directory"


class StubLoader:
    """Stands in for CheckpointLoader's reads: records them, and fails the read of ``broken``."""

    def __init__(self, broken: str = "") -> None:
        self.broken, self.reads = broken, []

    def read_sharded(self, plan: Any, name: str, target: dict[str, Any]) -> Any:
        self.reads.append(name)
        if name == self.broken:
            raise IntegrityError(
                [f"FILE_DIGEST_MISMATCH RESUME-6 {name}/__0_0.distcp: has digest x"]
            )
        return SimpleNamespace(apply=lambda: target.update(value=name))

    def load_json(self, plan: Any, name: str) -> Any:
        self.reads.append(name)
        return {"read": name}


@pytest.mark.parametrize("broken", ["optimizer", ""])
def test_load_applies_nothing_unless_every_component_was_read(tmp_path: Path, broken: str) -> None:
    checkpointer = Checkpointer(
        tmp_path / "run", DistContext(0, 1, 0, torch.device("cpu")), {"model": "m"}
    )
    checkpointer.loader = StubLoader(broken)  # type: ignore[assignment]
    applied: list[tuple[str, Any]] = []
    state = {
        "model": Sharded(dict, lambda value: applied.append(("model", value))),
        "position": Replicated(dict, lambda value: applied.append(("position", value))),
        "optimizer": Sharded(dict, lambda value: applied.append(("optimizer", value))),
        "rng": PerRank(dict, print, rederive=lambda step: applied.append(("rng", step))),
    }
    plan = SimpleNamespace(path=tmp_path, rederived=("rng",), manifest=SimpleNamespace(step=7))
    if broken:
        with pytest.raises(IntegrityError):
            checkpointer.load(plan, state)  # type: ignore[arg-type]
        assert applied == [], "live state changed before every component was read"
        return
    checkpointer.load(plan, state)  # type: ignore[arg-type]
    assert checkpointer.loader.reads == ["model", "optimizer", "position"]  # type: ignore[attr-defined]
    assert applied == [
        ("model", {"value": "model"}),
        ("optimizer", {"value": "optimizer"}),
        ("position", {"read": "position"}),
        ("rng", 7),
    ]


def test_elastic_load_refuses_a_rank_local_component_without_rederive(tmp_path: Path) -> None:
    checkpointer = Checkpointer(
        tmp_path / "run", DistContext(0, 1, 0, torch.device("cpu")), {"model": "m"}
    )
    checkpointer.loader = StubLoader()  # type: ignore[assignment]
    state = {"model": Sharded(dict, print), "rng": PerRank(dict, print)}
    plan = SimpleNamespace(path=tmp_path, rederived=("rng",), manifest=SimpleNamespace(step=7))
    with pytest.raises(ValueError, match="must re-derive rng, which has no rederive"):
        checkpointer.load(plan, state)  # type: ignore[arg-type]
    assert checkpointer.loader.reads == [], "read before refusing"  # type: ignore[attr-defined]
