"""The standalone reproductions behind the upstream reports of ``docs/matrix/bugs.md``.

Each ``docs/matrix/repros/<package>_<what>.py`` uses only torch and the framework (never
ckptspec), names the requirement it reproduces in its docstring's first line, and prints
``REPRODUCED: ...`` and exits 0 while the framework still behaves as reported (exit 1 with
``NOT REPRODUCED: ...`` once it is fixed). Each is run here against the pinned versions: a fix
upstream, or a repro that rots, fails this test and sends its report back for review. The
reports and the scripts are checked to name each other. Scripts of third-party frameworks run in
the frameworks tier; torch's own run in the core tier.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ckptspec.requirements import REQUIREMENTS

ROOT = Path(__file__).resolve().parents[2]
REPROS = ROOT / "docs" / "matrix" / "repros"
BUGS = ROOT / "docs" / "matrix" / "bugs.md"
SCRIPTS = sorted(REPROS.glob("*.py"))
HEADLINE = re.compile(
    r'^"""Reproduces: (?P<id>[A-Z]+-\d+) \((?P<package>[\w.]+) (?P<version>[\w.+]+)\)\.$'
)


def _param(script: Path) -> pytest.param:
    marks = [pytest.mark.slow] + (
        [] if script.name.startswith("torch_") else [pytest.mark.frameworks]
    )
    return pytest.param(script, id=script.stem, marks=marks)


def test_every_repro_names_its_requirement_and_its_report() -> None:
    assert SCRIPTS, f"no reproductions in {REPROS}"
    known = {r.id for r in REQUIREMENTS}
    linked = set(re.findall(r"docs/matrix/repros/(\w+\.py)", BUGS.read_text()))
    for script in SCRIPTS:
        match = HEADLINE.match(script.read_text().splitlines()[0])
        assert match, (
            f"{script.name}: the first line must read 'Reproduces: <ID> (<package> <version>).'"
        )
        assert match["id"] in known, f"{script.name}: unknown requirement {match['id']}"
        assert script.name in linked, f"{script.name}: no report in docs/matrix/bugs.md links it"
    assert linked <= {s.name for s in SCRIPTS}, (
        f"bugs.md links missing scripts: {linked - {s.name for s in SCRIPTS}}"
    )


@pytest.mark.parametrize("script", [_param(s) for s in SCRIPTS])
def test_repro_still_reproduces(script: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines and lines[-1].startswith("REPRODUCED: "), (
        f"{script.name} exited {proc.returncode}: the reported behaviour is gone or the script "
        f"broke; review its report in docs/matrix/bugs.md\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    )
