"""Run-directory scenarios built from the valid example run: what readers ignore, and how a
stale or broken index is reported."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from spec_cases import EXAMPLES

from ckptspec.findings import Finding
from ckptspec.validator import validate_path


@pytest.fixture
def run(tmp_path: Path) -> Path:
    shutil.copytree(
        EXAMPLES / "valid" / "run-complete" / "demo-run", tmp_path / "demo-run", symlinks=True
    )
    return tmp_path / "demo-run"


def codes(findings: list[Finding]) -> list[str]:
    return sorted(f.code for f in findings)


def test_the_example_run_is_clean(run: Path) -> None:
    assert validate_path(run, deep=True) == []


def test_a_staging_directory_with_a_manifest_is_ignored(run: Path) -> None:
    staging = run / ".staging-step-000000500-ffffffffffffffffffffffffffffffff"
    shutil.copytree(run / "step-000000300", staging)
    (staging / "manifest.json").write_text("not json at all")
    assert validate_path(run, deep=True) == []


def test_rewound_checkpoints_are_not_checked(run: Path) -> None:
    (run / ".rewound" / "fork-1" / "step-000000300" / "manifest.json").write_text("{}")
    assert validate_path(run) == []


def test_stale_index_after_a_new_commit(run: Path) -> None:
    shutil.copytree(run / "step-000000300", run / "step-000000400")
    manifest = run / "step-000000400" / "manifest.json"
    manifest.write_text(
        manifest.read_text()
        .replace('"step": 300', '"step": 400')
        .replace('"global_step": 300', '"global_step": 400')
        .replace('"step_count": 300', '"step_count": 400')
    )
    found = validate_path(run)
    # run.json and the latest link still name 300; keep_last 2 plus best allows three
    assert codes(found) == ["LATEST_LINK", "LATEST_MISMATCH", "RETENTION_EXCEEDED"]


def test_best_pointing_at_a_deleted_step(run: Path) -> None:
    shutil.rmtree(run / "step-000000100")
    assert codes(validate_path(run)) == ["BEST_LINK", "BEST_NOT_COMMITTED"]


def test_a_step_directory_without_manifest_is_a_warning_and_not_latest(run: Path) -> None:
    (run / "step-000000900").mkdir()
    found = validate_path(run)
    assert codes(found) == ["UNCOMMITTED_STEP_DIR"] and found[0].severity.value == "warning"


def test_a_latest_link_leaving_the_run_is_reported_not_followed(run: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    shutil.copytree(run / "step-000000300", outside)
    (run / "latest").unlink()
    os.symlink(outside, run / "latest")
    assert codes(validate_path(run)) == ["LATEST_LINK"]


def test_a_checkpoint_validated_through_the_latest_link(run: Path) -> None:
    assert validate_path(run / "latest", deep=True) == []


def test_a_symlinked_step_directory_is_not_a_checkpoint(run: Path, tmp_path: Path) -> None:
    shutil.copytree(run / "step-000000300", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", run / "step-000000700")
    assert validate_path(run) == []  # not listed, so latest stays 300


def test_an_empty_directory_is_not_a_checkpoint(tmp_path: Path) -> None:
    assert codes(validate_path(tmp_path)) == ["CHECKPOINT_NO_MANIFEST"]
