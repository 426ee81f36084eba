"""The worked DDP example: the docs show exactly its code, and it passes a subset of the suite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from suite_run import run_conformance_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "conformance" / "examples" / "ddp_trainer.py"
DOC = ROOT / "docs" / "conformance.md"


def test_docs_show_the_example_file() -> None:
    match = re.search(
        r"<!-- begin ddp_trainer.py -->\n```python\n(.*?)```\n<!-- end ddp_trainer.py -->",
        DOC.read_text(),
        re.S,
    )
    assert match, "docs/conformance.md lacks the marked ddp_trainer.py block"
    assert match.group(1) == EXAMPLE.read_text(), (
        "docs/conformance.md and conformance/examples/ddp_trainer.py differ"
    )


@pytest.mark.slow
def test_example_passes_the_core_scenarios(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = run_conformance_cli(
        tmp_path,
        "--adapter",
        "ckptspec.conformance.examples.ddp_trainer:DDPAdapter",
        "-k",
        "test_bit_exact_resume or test_world_size_mismatch or test_eval_with_empty_shards or test_config_drift or test_deferred_grad_sync or test_power_loss_during_save",
        "--report",
        str(report),
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    rows = {r["id"]: r["outcome"] for r in json.loads(report.read_text())["requirements"]}
    for req in (
        "COMMIT-5",  # its .metadata is small enough to stay in DCP's buffer at DCP's own fsync
        "RESUME-1",
        "RESUME-3",
        "RESUME-4",
        "RESUME-5",
        "RESUME-8",
        "RESUME-9",
        "RESUME-10",
        "EVAL-1",
        "EVAL-2",
        "EVAL-3",
    ):
        assert rows[req] == "pass", (req, rows[req])
