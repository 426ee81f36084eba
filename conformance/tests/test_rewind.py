"""Rewind: resuming an older checkpoint and saving forks the timeline (RUN-6, RUN-2, RUN-3)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ckptspec.conformance.checks import Verdict
from ckptspec.conformance.harness import Harness, committed_steps
from ckptspec.conformance.phase import Resume, Save, Train
from ckptspec.conformance.scenarios import stepped_run
from ckptspec.conformance.strategies import (
    RewindScenario,
    replay_command,
    rewind_scenarios,
    scenario_test,
)
from ckptspec.layout import LAYOUT, checkpoint_dir_name


@pytest.mark.requirement("RUN-6", "RUN-2", "RUN-3")
@scenario_test(RewindScenario, rewind_scenarios)
def test_rewind(harness: Harness, verdict: Verdict, scenario: RewindScenario) -> None:
    """Steps after the resumed one move to `.rewound/`, run.json records the fork, latest follows."""
    verdict.begin(replay_command("test_rewind", scenario))
    setup = stepped_run(harness, scenario.saves)
    if not verdict.require(
        "RUN-6", not setup.failure, f"could not produce the checkpoints:\n{setup.failure}"
    ):
        verdict.conclude()
    config = harness.fork(setup.config)
    run_dir = harness.run_dir(config)
    before = json.loads((run_dir / LAYOUT.run_index_file).read_text())
    target = scenario.target
    result = harness.phase(
        config, 2, [Resume(str(run_dir / checkpoint_dir_name(target))), Train(1), Save()]
    )
    if not verdict.phase_completed("RUN-6", result, f"resume at step {target}, train 1, save"):
        verdict.conclude()
    discarded = list(range(target + 1, scenario.saves + 1))
    steps = committed_steps(run_dir)
    verdict.check(
        "RUN-6",
        steps == list(range(1, target + 2)),
        f"after rewinding to {target} and saving {target + 1}, committed steps are {steps}",
    )
    rewound = (
        sorted(p.name for p in (run_dir / LAYOUT.rewound_dir).glob("*/step-*"))
        if (run_dir / LAYOUT.rewound_dir).is_dir()
        else []
    )
    verdict.check(
        "RUN-6",
        set(rewound) >= {checkpoint_dir_name(s) for s in discarded},
        f"`{LAYOUT.rewound_dir}/` holds {rewound}; the discarded steps {discarded} must be moved there",
    )
    index = json.loads((run_dir / LAYOUT.run_index_file).read_text())
    forks = index.get("rewinds") or []
    last = forks[-1] if forks else {}
    verdict.check(
        "RUN-6",
        last.get("resumed_from_step") == target and last.get("discarded_steps") == discarded,
        f"run.json rewinds ends with {last!r}; expected resumed_from_step {target}, discarded_steps {discarded}",
    )
    verdict.check(
        "RUN-2",
        index.get("latest_step") == target + 1,
        f"run.json latest_step is {index.get('latest_step')!r}, expected {target + 1}",
    )
    link = run_dir / "latest"
    if link.is_symlink():
        verdict.check(
            "RUN-2",
            Path(os.path.realpath(link)).name == checkpoint_dir_name(target + 1),
            f"`latest` points at {os.readlink(link)}, expected {checkpoint_dir_name(target + 1)}",
        )
    old_best = (before.get("best") or {}).get("step")
    new_best = (index.get("best") or {}).get("step")
    if old_best is None:
        verdict.not_run("RUN-3", "the run had no best record before the rewind")
    elif old_best > target:
        verdict.check(
            "RUN-6",
            new_best is None,
            f"best pointed at discarded step {old_best}; after the rewind it is {new_best!r}, expected cleared",
        )
        verdict.not_run("RUN-3", f"the best record pointed at discarded step {old_best}")
    else:
        verdict.check(
            "RUN-3",
            new_best == old_best,
            f"best moved from {old_best!r} to {new_best!r} by a rewind that kept it",
        )
    verdict.conclude()
