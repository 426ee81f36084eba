"""Everything the trainer writes validates with ``ckptspec validate --deep``.

The workload touches every kind of run-level state: evaluated saves with best tracking and
retention, a restart that resumes (``resumed_from``), and a rewind (``.rewound/``). Each
validator finding is attributed to the requirement it names; requirements that only the
validator checks are reported through this test: each is ``pass`` only when every phase
completed and the validator, run over the checkpoints they wrote, reported no error for it.
"""

from __future__ import annotations

import pytest

from ckptspec.conformance.checks import Verdict
from ckptspec.conformance.harness import Harness
from ckptspec.conformance.phase import Evaluate, Resume, Save, Train
from ckptspec.conformance.scenarios import metric_name
from ckptspec.conformance.validation import findings
from ckptspec.layout import checkpoint_dir_name
from ckptspec.requirements import REQUIREMENTS

VALIDATED = tuple(r.id for r in REQUIREMENTS if "validator" in r.verified_by)


@pytest.mark.requirement(*VALIDATED)
def test_checkpoints_validate(harness: Harness, verdict: Verdict) -> None:
    """Saves (with eval, best, retention), a resume and a rewind: the run validates after each phase."""
    if not verdict.applies("LAYOUT-1"):
        # No ckptspec run to validate (the writer requirements are n/a); the resume-class
        # requirements among these (retention, empty eval sets) are judged by the behavioural tests.
        for requirement in verdict.applicable():
            verdict.not_run(
                requirement,
                "the validator reads only ckptspec's format; judged by the behavioural tests",
            )
        verdict.conclude()
        return
    metric = metric_name(harness)
    settings = (
        {"best_metric": metric, "best_mode": "min"}
        if metric and "best" in harness.capabilities
        else {}
    )
    if "retention" in harness.capabilities:
        settings["keep_last"] = 2
    config = harness.config(total_steps=6, **settings)
    run_dir = harness.run_dir(config)
    evaluate = [Evaluate(((tuple(range(harness.eval_set_size))), ()))] if metric else []
    phases = [
        ("3 x (train, evaluate, save)", [Train(1), *evaluate, Save()] * 3),
        ("restart, train, evaluate, save", [Resume(None), Train(1), *evaluate, Save()]),
        (
            "rewind to step 3, train, save",
            [Resume(str(run_dir / checkpoint_dir_name(3))), Train(1), Save()],
        ),
    ]
    for what, actions in phases:
        result = harness.phase(config, 2, actions)
        if not verdict.require(
            "LAYOUT-1",
            not result.missing and not result.errors(),
            f"{what} failed:\n{result.describe()}",
        ):
            break
        for requirement, severity, line in findings(run_dir):
            if severity == "error":
                verdict.check(
                    requirement if requirement in VALIDATED else "LAYOUT-1",
                    False,
                    f"after {what}: {line}",
                )
    else:
        # Every phase wrote checkpoints and the validator checked them after each one: what it
        # did not object to held.
        for requirement in VALIDATED:
            verdict.check(requirement, True, "")
        verdict.conclude()
    for requirement in VALIDATED:
        verdict.not_run(
            requirement, "a phase failed, so the validator never saw the run it was to check"
        )
    verdict.conclude()
