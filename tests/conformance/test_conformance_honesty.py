"""Meta-test: no conformance test reports a requirement ``pass`` without a check that ran.

The whole suite runs against an adapter that declares every capability and cannot be built, so
no check of the trainer can ever run or hold. Every requirement every test names must come back
``fail``, ``error``, ``blocked`` or ``not-run`` -- a test that could conclude without recording a
check (the plugin then reports ``not-run``, and :meth:`Verdict.conclude` raises) or that records
a pass it did not check shows up here as a ``pass``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from suite_run import run_conformance_cli

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def _env_with_toy_adapters() -> dict[str, str]:
    """This environment on one thread, with ``toy_adapter`` importable."""
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }


def test_an_unbuildable_trainer_gets_no_pass(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    env = _env_with_toy_adapters()
    proc = run_conformance_cli(
        tmp_path,
        "--adapter",
        "toy_adapter:UnbuildableAdapter",
        "--report",
        str(report),
        "--",
        "-p",
        "no:cacheprovider",
        env=env,
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    assert report.is_file(), output[-4000:]
    document = json.loads(report.read_text())
    assert document["exit_status"] != 0 and proc.returncode == document["exit_status"], output[
        -4000:
    ]
    assert document["tests"], "no conformance test ran"
    passed = {
        t["nodeid"]: [r for r, o in t["requirements"].items() if o == "pass"]
        for t in document["tests"]
    }
    assert not any(passed.values()), {t: r for t, r in passed.items() if r}
    assert not [r["id"] for r in document["requirements"] if r["outcome"] == "pass"]
    assert all(t["outcome"] != "skipped" for t in document["tests"]), (
        "every capability is declared: nothing may skip"
    )


@pytest.mark.parametrize(
    ("adapter", "outcome"), [("LazyRngAdapter", "pass"), ("LazyRngLostAdapter", "fail")]
)
def test_a_deferred_rng_restore_is_judged_after_the_first_batch(
    tmp_path: Path, adapter: str, outcome: str
) -> None:
    """``restore_on_first_batch`` moves the RNG comparison after the first resumed step: a
    trainer that applies the RNG there passes RESUME-8; one that never applies it still fails."""
    report = tmp_path / "report.json"
    env = _env_with_toy_adapters()
    proc = run_conformance_cli(
        tmp_path,
        "--adapter",
        f"toy_adapter:{adapter}",
        "--derandomize",
        "-k",
        "test_bit_exact_resume and not accumulation and not epochs and not nodes",
        "--report",
        str(report),
        env=env,
        timeout=600,
    )
    assert report.is_file(), (proc.stdout + proc.stderr)[-4000:]
    rows = {r["id"]: r for r in json.loads(report.read_text())["requirements"]}
    assert rows["RESUME-8"]["outcome"] == outcome, rows["RESUME-8"]
