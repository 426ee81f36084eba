"""`ckptspec conformance` as a user runs it (issue 24, items 4 and 7): a `--requirement` the suite
does not check is a usage error (exit 2), and the first Ctrl-C stops the run promptly, keeps the
partial report (valid against its published schema) at the printed path, writes the HTML page
and exits 130."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from ckptspec.cli import main
from ckptspec.schemas import load_schema


def test_an_unknown_requirement_is_a_usage_error_with_suggestions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["conformance", "--requirement", "RESUME-99"]) == 2
    err = capsys.readouterr().err
    assert "--requirement RESUME-99: is not a requirement of the spec (did you mean RESUME-9" in err


def test_a_validator_only_requirement_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from ckptspec.requirements import REQUIREMENTS

    only_validator = next(r.id for r in REQUIREMENTS if "conformance" not in r.verified_by)
    assert main(["conformance", "--requirement", only_validator]) == 2
    assert "checked by the validator only" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_stops_the_run_keeps_the_partial_report_and_exits_130(tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ckptspec",
            "conformance",
            "--requirement",
            "LAYOUT-2",
            "--html",
            str(html),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # the first finished phase: ranks are running
        seen.append(line)
        if " phase 1 " in line:
            break
    else:
        pytest.fail("".join(seen))
    os.killpg(
        proc.pid, signal.SIGINT
    )  # what Ctrl-C on the terminal does: the whole foreground group
    interrupted = time.monotonic()
    out, err = proc.communicate(timeout=300)
    stopped_in = time.monotonic() - interrupted
    assert proc.returncode == 130, err
    assert stopped_in < 90, f"took {stopped_in:.0f} s to stop"
    kept = re.search(r"interrupted; partial report in (\S+)", err)
    assert kept, err
    report = json.loads(Path(kept.group(1)).read_text())
    Draft202012Validator(load_schema("conformance-report.schema.json")).validate(report)
    assert report["output_version"] == 1 and html.is_file() and "LAYOUT-2" in html.read_text()
    rows = {
        r["id"]: r for r in report["requirements"]
    }  # the selection, not a NOT-RUN row per requirement
    assert "LAYOUT-2" in rows and all(r["tests"] or i == "LAYOUT-2" for i, r in rows.items()), (
        sorted(rows)
    )
    Path(kept.group(1)).unlink()
