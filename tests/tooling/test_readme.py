"""The README as a front door (issue 24, item 8): its runnable snippets run (each marked
`<!-- runnable ... -->` above its code block; `slow` ones in the slow tier), the first link out
comes within 100 lines, no placeholder like `<owner>` is left, and the matrix at a glance says
what the stored reports say."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
RUNNABLE = re.findall(r"<!-- runnable(?P<note>[^>]*)-->\n```sh\n(?P<code>.*?)```", README, re.S)


def _params() -> list:
    return [
        pytest.param(code, id=f"snippet{i}", marks=[pytest.mark.slow] if "slow" in note else [])
        for i, (note, code) in enumerate(RUNNABLE)
    ]


def test_there_are_runnable_snippets_for_each_thing_users_do() -> None:
    assert len(RUNNABLE) == 3
    assert any("ckptspec validate" in c for _, c in RUNNABLE) and any(
        "ckptspec conformance" in c for _, c in RUNNABLE
    )
    assert any("ckptspec schema --print" in c for _, c in RUNNABLE)


@pytest.mark.parametrize("code", _params())
def test_a_runnable_snippet_runs(code: str, tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "spec/examples/valid/run-complete/demo-run",
        tmp_path / "runs/demo-run",
        symlinks=True,
    )
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for written in ("ckptspec.sarif", "manifest.schema.json", "expected.json", "conformance.json"):
        if f"> {written}" in code or f"--report {written}" in code:
            assert json.loads((tmp_path / written).read_text())


def test_the_first_link_out_is_within_100_lines_and_no_placeholder_is_left() -> None:
    lines = README.splitlines()
    first_link = next(i for i, line in enumerate(lines, 1) if re.search(r"\]\(", line))
    assert first_link <= 100
    assert "<owner>" not in README and "<commit" not in README


def test_the_matrix_at_a_glance_matches_the_stored_reports() -> None:
    rows = re.findall(r"^\| (.+?)" + r" \| (\d+)" * 6 + r" \|$", README, re.M)
    counted = []
    for path in sorted((ROOT / "docs/matrix").glob("*.json")):
        c = collections.Counter(r["outcome"] for r in json.loads(path.read_text())["requirements"])
        counted.append(
            tuple(str(c[o]) for o in ("pass", "fail", "xfail", "blocked", "skipped", "n/a"))
        )
    assert sorted(tuple(r[1:]) for r in rows) == sorted(counted)
