"""The conformance suite's quick profile against the reference adapter, run as a user would:
with synchronous saves, and with asynchronous ones (the background commit path).

One subprocess, started outside the repository: ``pytest --pyargs ckptspec.conformance.tests``
with a JSON report and an xfails file naming an unknown test id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from suite_run import run_suite

from ckptspec.requirements import REQUIREMENTS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("adapter", ["ReferenceAdapter", "ReferenceAsyncAdapter"])
def test_quick_profile_passes_against_the_reference_adapter(tmp_path: Path, adapter: str) -> None:
    report = tmp_path / "report.json"
    xfails = tmp_path / "xfails.txt"
    xfails.write_text("# expected failures\ntest_does_not_exist  # unknown on purpose\n")
    chosen = (
        []
        if adapter == "ReferenceAdapter"
        else ["--ckptspec-adapter", f"ckptspec.reference_impl.adapter:{adapter}"]
    )
    proc = run_suite(
        tmp_path,
        *chosen,
        "--ckptspec-report",
        str(report),
        "--ckptspec-xfails",
        str(xfails),
        timeout=1500,  # a hang guard: every phase has its own deadline
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert f"adapter: ckptspec.reference_impl.adapter:{adapter}" in output
    assert "ckptspec conformance: requirement outcomes" in output
    assert "unknown test id 'test_does_not_exist'" in output
    document = json.loads(report.read_text())
    rows = {r["id"]: r for r in document["requirements"]}
    assert set(rows) == {r.id for r in REQUIREMENTS}
    assert document["exit_status"] == 0 and document["unknown_xfails"] == ["test_does_not_exist"]
    bad = {
        i: r["outcome"]
        for i, r in rows.items()
        if r["outcome"] != "pass" and not (r["outcome"] == "not-run" and r["level"] != "MUST")
    }
    assert not bad, bad
    must = [
        r.id for r in REQUIREMENTS if r.level.value == "MUST" and "conformance" in r.verified_by
    ]
    assert all(rows[i]["outcome"] == "pass" for i in must)
