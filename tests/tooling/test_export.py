"""``ckptspec export`` and the reference trainer's ``--init-from``: weights out, weights in."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ckptspec.cli import main
from ckptspec.diff_cmd import compare, load_leaves
from ckptspec.validator import validate_path

pytestmark = pytest.mark.slow  # starts torch processes or process groups: not in `make test-fast`

pytest.importorskip("safetensors")

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def not_model(checkpoint: Path) -> tuple[str, ...]:
    """Every component of ``checkpoint`` but the model (what the weights comparison ignores)."""
    return tuple(
        c["name"]
        for c in json.loads((checkpoint / "manifest.json").read_text())["components"]
        if c["name"] != "model"
    )


def _train(output: Path, run_id: str, *extra: str) -> Path:
    """One single-process reference run of 2 steps; returns its final checkpoint."""
    cmd = [
        sys.executable,
        "-m",
        "ckptspec.reference_impl.train",
        "--output-dir",
        str(output),
        "--run-id",
        run_id,
        *extra,
    ]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return max((output / run_id).glob("step-*"))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("runs"), "source", "--steps", "2")


def test_export_is_a_valid_weights_only_checkpoint_and_starts_a_new_run(
    source: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from ckptspec.digest import state_digest

    out = tmp_path / "export"
    assert main(["export", str(source), str(out)]) == 0
    assert validate_path(out, deep=True) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumable"] is False
    assert [(c["name"], c["format"]) for c in manifest["components"]] == [
        ("model", "safetensors"),
        ("model_index", "json"),
    ]
    assert manifest["extensions"]["ckptspec.export"]["source_step"] == 2
    weights = load_file(out / manifest["components"][0]["files"][0]["path"])
    source_model = {
        k.removeprefix("model/"): v
        for k, v in load_leaves(source, ignore=not_model(source)).items()
    }
    assert weights.keys() == source_model.keys() and state_digest(weights) == state_digest(
        source_model
    )

    # lr 0 keeps the weights unchanged through one step, so the new run's checkpoint holds the export's weights
    started = _train(
        tmp_path / "runs", "finetune", "--steps", "1", "--lr", "0", "--init-from", str(out)
    )
    assert compare(source, started, ignore=not_model(source)) == []
    record = json.loads((started / "manifest.json").read_text())["config"]["values"]["init_from"]
    assert record["step"] == 2 and record["run_id"] == "source"
    assert (
        record["manifest_sha256"]
        == hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    )


def test_without_init_from_the_new_run_does_not_start_from_the_source(
    source: Path, tmp_path: Path
) -> None:
    fresh = _train(tmp_path / "runs", "fresh", "--steps", "1", "--lr", "0")
    assert compare(source, fresh, ignore=not_model(source))  # the check above is not vacuous


def test_export_refuses_an_existing_target_and_a_corrupt_source(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    out.mkdir()
    assert main(["export", str(source), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(source), str(broken)], check=True)
    payload = next(p for p in (broken / "model").iterdir() if p.suffix == ".distcp")
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different SHA-256: only --deep sees it
    payload.write_bytes(bytes(data))
    assert main(["export", str(broken), str(tmp_path / "from-broken")]) == 1
    captured = capsys.readouterr()
    assert "not a conformant checkpoint" in captured.err and "model/" in captured.out
    assert not (tmp_path / "from-broken").exists()


def test_diff_of_an_export_against_its_source_compares_the_weights(
    source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    assert main(["export", str(source), str(out)]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "ckptspec", "diff", "--format", "json", str(source), str(out)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    document = json.loads(done.stdout)
    assert (
        done.returncode == 0
        and document["verdict"] == "identical"
        and document["compared"] == "model"
    ), done.stderr
    assert set(document["ignored"]) == set(not_model(source)) | {"model_index"}
    # not vacuous: a run that did not start from the source has other weights, and diff says which
    fresh = _train(tmp_path / "runs", "fresh", "--steps", "1", "--lr", "0")
    assert main(["diff", str(fresh), str(out)]) == 1
