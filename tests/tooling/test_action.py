"""Items 2 and 5 of issue 24: the GitHub Action's script as `action.yml` runs it (annotations on
stdout, a job summary table, glob expansion in `paths`, SARIF output) and the pre-commit hook's
entry on the files its `files:` pattern selects (a web app's manifest.json is left alone)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "spec" / "examples"
SCRIPT = ROOT / "scripts" / "action_validate.sh"
BIN = str(Path(sys.executable).parent)


def action(
    tmp_path: Path, paths: str, **inputs: str
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs.txt"
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "CKPTSPEC_PATHS": paths,
        "CKPTSPEC_INSTALL": "",
        "CKPTSPEC_REPORT": str(tmp_path / "findings.json"),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
        "OMP_NUM_THREADS": "1",
        **inputs,
    }
    done = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    return done, summary, outputs


def _workspace(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(
        EXAMPLES / "valid/checkpoint-xxh3/step-000000100",
        runs / "good/step-000000100",
        symlinks=True,
    )
    shutil.copytree(
        EXAMPLES / "invalid/layout/file-size-mismatch/step-000000100",
        runs / "bad/step-000000100",
        symlinks=True,
    )
    return runs


def test_the_action_annotates_findings_writes_a_summary_and_expands_globs(tmp_path: Path) -> None:
    _workspace(tmp_path)
    done, summary, outputs = action(tmp_path, "runs/*/step-*", CKPTSPEC_DEEP="true")
    assert done.returncode == 1, done.stderr
    annotations = done.stdout.splitlines()
    assert (
        annotations == [line for line in annotations if line.startswith("::")]
        and len(annotations) == 1
    )
    assert annotations[0].startswith(
        "::error file=runs/bad/step-000000100/rng/rank-00000.pt,title=FILE_SIZE_MISMATCH (LAYOUT-5)::"
    )
    report = json.loads((tmp_path / "findings.json").read_text())
    assert [t["path"] for t in report["targets"]] == [
        "runs/bad/step-000000100",
        "runs/good/step-000000100",
    ] and report["deep"]
    table = summary.read_text()
    assert "## ckptspec validate: not conformant" in table
    assert (
        "| error | FILE_SIZE_MISMATCH | LAYOUT-5 | `runs/bad/step-000000100/rng/rank-00000.pt#/components/2/files/0` |"
        in table
    )
    assert "verdict=not_conformant" in outputs.read_text() and "exit-code=1" in outputs.read_text()


def test_the_action_writes_sarif_when_asked(tmp_path: Path) -> None:
    _workspace(tmp_path)
    done, _, _ = action(
        tmp_path, "runs/bad/step-000000100", CKPTSPEC_SARIF=str(tmp_path / "out.sarif")
    )
    assert done.returncode == 1
    log = json.loads((tmp_path / "out.sarif").read_text())
    assert [r["ruleId"] for r in log["runs"][0]["results"]] == ["FILE_SIZE_MISMATCH"]


def test_a_glob_that_matches_nothing_fails_with_exit_2(tmp_path: Path) -> None:
    done, _, _ = action(tmp_path, "nowhere/*/step-*")
    assert (
        done.returncode == 2
        and "matches nothing" in done.stderr
        and done.stdout.startswith("::error ")
    )


def test_action_yml_passes_every_input_and_documents_the_default_digest() -> None:
    spec = yaml.safe_load((ROOT / "action.yml").read_text())
    assert (
        "xxh3-128" in spec["inputs"]["deep"]["description"]
        and "SHA-256 of every" not in spec["inputs"]["deep"]["description"]
    )
    env = spec["runs"]["steps"][0]["env"]
    assert {
        "CKPTSPEC_PATHS",
        "CKPTSPEC_DEEP",
        "CKPTSPEC_STRICT",
        "CKPTSPEC_REPORT",
        "CKPTSPEC_SARIF",
    } <= env.keys()
    uploads = [
        s
        for s in spec["runs"]["steps"]
        if s.get("uses", "").startswith("github/codeql-action/upload-sarif")
    ]
    assert uploads and "inputs.sarif" in uploads[0]["if"]


def test_the_pre_commit_hook_leaves_a_web_manifest_alone_and_fails_a_bad_one(
    tmp_path: Path,
) -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (tmp_path / "web").mkdir()
    (tmp_path / "web/manifest.json").write_text('{"name": "My App", "start_url": "/", "icons": []}')
    shutil.copy(EXAMPLES / "valid/manifest-weights-only/manifest.json", tmp_path / "manifest.json")
    (tmp_path / "bad").mkdir()
    shutil.copy(
        EXAMPLES / "invalid/manifest/schema-negative-size/manifest.json",
        tmp_path / "bad/manifest.json",
    )
    (tmp_path / "package.json").write_text("{}")
    files = [
        p
        for p in ("web/manifest.json", "manifest.json", "package.json")
        if re.search(hook["files"], p)
    ]
    assert files == ["web/manifest.json", "manifest.json"]
    entry = hook["entry"].split()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    good = subprocess.run(
        entry + files, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert good.returncode == 0 and good.stdout == "", good.stdout + good.stderr
    bad = subprocess.run(
        entry + files + ["bad/manifest.json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert (
        bad.returncode == 1
        and "bad/manifest.json" in bad.stdout
        and "web/manifest.json" not in bad.stdout
    )
