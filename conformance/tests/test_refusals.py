"""Integrity before mutation (RESUME-6), discovery (LAYOUT-8, LAYOUT-3, LAYOUT-4), drift (RESUME-5)."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event

from ckptspec.conformance.adapter import ScenarioConfig
from ckptspec.conformance.checks import Verdict, refusal_checks
from ckptspec.conformance.harness import Harness
from ckptspec.conformance.phase import FullState, Resume
from ckptspec.conformance.scenarios import saved_run, stepped_run
from ckptspec.conformance.strategies import (
    IntegrityScenario,
    integrity_scenarios,
    replay_command,
    scenario_test,
)
from ckptspec.layout import LAYOUT, checkpoint_dir_name, staging_dir_name
from ckptspec.manifest import REQUIRED_FINGERPRINT_KEYS

INTEGRITY_CHECKPOINTS = 3
"""Checkpoints the integrity test damages, one file each per round: the run other tests share
(memoised, no set-up of its own). Every damage kind and every file class get a slot; the slots
run in rounds of this many, each on a fresh copy of the run (one short phase of refused resumes
per round), so that one example covers every kind and every class."""


def file_class(relative: Path) -> str:
    """A file's class: its path inside the checkpoint with every number masked (``rng/rank-#.pt``)."""
    return re.sub(r"\d+", "#", str(relative))


def _payload(checkpoint: Path, native: bool) -> dict[str, list[Path]]:
    """The non-empty regular files of ``checkpoint`` (a directory, or a single file) by class, in
    path order. A ckptspec manifest is left out: it is the commit marker, and a damaged one is
    LAYOUT-3's and the validator's."""
    if not checkpoint.is_dir():
        return {file_class(Path(checkpoint.name)): [checkpoint]}
    classes: dict[str, list[Path]] = {}
    for p in sorted(checkpoint.rglob("*")):
        rel = p.relative_to(checkpoint)
        if (
            p.is_file()
            and not p.is_symlink()
            and p.stat().st_size > 0
            and (native or rel != Path(LAYOUT.manifest_file))
        ):
            classes.setdefault(file_class(rel), []).append(p)
    return classes


def _damage(target: Path, how: str, peers: list[Path], elsewhere: list[Path]) -> str:
    """Damage ``target``; return what was done, or "" when ``how`` has nothing to work with.
    ``peers``: the other files of its class in its checkpoint (other ranks' files, for a swap);
    ``elsewhere``: intact files of the same path in other checkpoints and of its peers (a
    replacement of the same size, different bytes)."""
    data = target.read_bytes()
    if how == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        middle = len(data) // 2
        target.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :])
    elif how == "extend":
        target.write_bytes(data + b"\xab" * 64)
    elif how == "delete":
        target.unlink()
    elif how == "swap":
        other = next((p for p in peers if p.read_bytes() != data), None)
        if other is None:
            return _damage(target, "replace", peers, elsewhere)
        target.write_bytes(other.read_bytes())
        other.write_bytes(data)
        return f"swap {target.name} with {other.name} in {target.parent}"
    else:
        source = next(
            (p for p in elsewhere if p.stat().st_size == len(data) and p.read_bytes() != data), None
        )
        if source is None:
            return ""
        target.write_bytes(source.read_bytes())
        return f"replace {target} with the same-size {source}"
    return f"{how} {target}"


MIDDLE_BYTES = IntegrityScenario(
    ("flip", "truncate", "extend", "delete", "replace", "swap"), (0.5,) * 6
)
"""Every damage kind on every file class, from the middle of each class's files: run by every
profile, since a small or derandomized one may draw only first files."""

SAME_SIZE = IntegrityScenario(("flip", "replace", "swap"), (0.5,) * 3)
"""A damage that keeps the file's size on every file class: a reader that checks sizes but not
digests refuses every truncation, extension and deletion, so in :data:`MIDDLE_BYTES` a class
whose slot draws one of those never meets a damage only a digest sees."""


@pytest.mark.requirement("RESUME-6")
@scenario_test(IntegrityScenario, integrity_scenarios, always=[MIDDLE_BYTES, SAME_SIZE])
def test_integrity_before_mutation(
    harness: Harness, verdict: Verdict, scenario: IntegrityScenario
) -> None:
    """Every damage kind x every file class x every digest algorithm the trainer can write: each
    damaged checkpoint's resume fails before live state changes."""
    verdict.begin(replay_command("test_integrity_before_mutation", scenario))
    steps = list(range(1, INTEGRITY_CHECKPOINTS + 1))

    def checkpoints(algorithm: str | None) -> tuple[ScenarioConfig, dict[int, Path]]:
        """The shared run whose file digests use ``algorithm`` (None: the trainer's default)."""
        setup = stepped_run(
            harness, INTEGRITY_CHECKPOINTS, **({"digest_algorithm": algorithm} if algorithm else {})
        )
        digests = f" with {algorithm} digests" if algorithm else ""
        if not verdict.require(
            "RESUME-6",
            not setup.failure,
            f"could not produce the checkpoints{digests}:\n{setup.failure}",
        ):
            verdict.conclude()
        intact = harness.checkpoints(setup.config)
        if not verdict.require(
            "RESUME-6",
            sorted(intact) == steps,
            f"the trainer lists checkpoints {sorted(intact)}{digests}, expected steps {steps}",
        ):
            verdict.conclude()
        return setup.config, intact

    classes = sorted(_payload(checkpoints(None)[1][1], harness.native))
    offset = int(scenario.picks[0] * len(classes))
    slots = max(len(scenario.damages), len(classes))
    # Round 0 with the trainer's default digests; the next rounds cycle through those it can write.
    algorithms = harness.declared.digest_algorithms
    for round_no, first in enumerate(range(0, slots, len(steps))):
        algorithm = (
            algorithms[(round_no - 1 + offset) % len(algorithms)]
            if round_no and algorithms
            else None
        )
        setup_config, intact = checkpoints(algorithm)
        config = harness.fork(setup_config)
        found = harness.checkpoints(config)
        damaged: dict[int, str] = {}
        for j in range(first, min(slots, first + len(steps))):
            step = steps[j - first]
            how, pick = (
                scenario.damages[j % len(scenario.damages)],
                scenario.picks[j % len(scenario.picks)],
            )
            kind = classes[(offset + j) % len(classes)]
            files = _payload(found[step], harness.native).get(kind, [])
            if not files:
                continue
            target = files[min(int(pick * len(files)), len(files) - 1)]
            if found[step].is_dir():
                rel = target.relative_to(found[step])
                elsewhere = [c / rel for c in intact.values() if (c / rel).is_file()]
                elsewhere += [
                    intact[step] / p.relative_to(found[step]) for p in files if p != target
                ]
            else:
                elsewhere = [c for c in intact.values() if c.is_file()]
            done = _damage(target, how, [p for p in files if p != target], elsewhere)
            if done:  # paths relative to the run directory (the copy's or the intact run's)
                done = done.replace(f"{found[step].parent}/", "").replace(
                    f"{intact[step].parent}/", "intact "
                )
                event(f"integrity: {done.split()[0]} x {kind} x {algorithm or 'default'} digests")
                digests = f", {algorithm} digests" if algorithm else ""
                damaged[step] = f"{done} (class {kind}{digests})"
        if not verdict.require(
            "RESUME-6", bool(damaged), f"no damage applied to the checkpoints' classes {classes}"
        ):
            verdict.conclude()
        actions = [FullState(), *(Resume(str(found[s])) for s in damaged), FullState()]
        result = harness.phase(config, 2, actions, may_fail=set(range(1, len(damaged) + 1)))
        if not verdict.check(
            "RESUME-6",
            not result.missing,
            f"resumes of damaged checkpoints did not complete:\n{result.describe()}",
        ):
            verdict.conclude()
        refusal_checks(verdict, "RESUME-6", result, dict(enumerate(damaged.values(), start=1)))
    verdict.conclude()


@pytest.mark.requirement("LAYOUT-8", "LAYOUT-3", "LAYOUT-4")
def test_discovery_by_step_and_marker(harness: Harness, verdict: Verdict) -> None:
    """Latest is the highest committed step: not the newest mtime, not a manifest-less or staging dir."""
    setup = stepped_run(harness, 3)
    if not verdict.require(
        "LAYOUT-8", not setup.failure, f"could not produce the checkpoints:\n{setup.failure}"
    ):
        verdict.conclude()
    config = harness.fork(setup.config)
    run_dir = harness.run_dir(config)
    future = time.time() + 3600
    os.utime(run_dir / checkpoint_dir_name(1), (future, future))
    for child in (run_dir / checkpoint_dir_name(1)).rglob("*"):
        os.utime(child, (future, future), follow_symlinks=False)
    decoy = run_dir / checkpoint_dir_name(50)  # a step directory without a manifest
    decoy.mkdir()
    (decoy / "payload.bin").write_bytes(b"not a checkpoint")
    staging = run_dir / staging_dir_name(99, uuid.uuid4().hex)
    staging.mkdir()
    (staging / "payload.bin").write_bytes(b"in flight")
    result = harness.phase(config, 2, [Resume(None)])
    got = {r: res.value if res.ok else res.error.short() for r, res in result.results(0).items()}  # type: ignore[union-attr]
    ok = not result.missing and all(v == 3 for v in got.values())
    verdict.check(
        "LAYOUT-3",
        ok or 50 not in got.values(),
        f"resumed from {checkpoint_dir_name(50)}, which has no manifest",
    )
    verdict.check("LAYOUT-4", ok or 99 not in got.values(), "resumed from a staging directory")
    verdict.check(
        "LAYOUT-8",
        ok or bool({50, 99} & set(got.values())),
        f"resume of latest gave {got} (step 1 has the newest mtime); expected step 3\n{result.describe()}",
    )
    verdict.conclude()


FINGERPRINT_DRIFT: dict[str, dict[str, Any]] = {
    "accumulation_steps": {"accumulation_steps": 2, "global_batch_size": 12},
    "global_batch_size": {"global_batch_size": 24},
    "dataset": {"seed": 1},  # the dataset's identity: its seed (ScenarioConfig)
}
"""How a scenario config changes each fingerprinted key of the spec (``REQUIRED_FINGERPRINT_KEYS``);
the architecture (``model``) is the adapter's own and no config setting changes it."""
UNDRIVABLE_KEYS = frozenset({"model"})


def drifts(capabilities: frozenset[str]) -> dict[str, dict[str, Any]]:
    """One config change per fingerprinted key of the spec, derived from ``REQUIRED_FINGERPRINT_KEYS``
    (a key the suite cannot change is a suite bug: ``KeyError``), for the adapter's capabilities."""
    out = {
        key: FINGERPRINT_DRIFT[key]
        for key in REQUIRED_FINGERPRINT_KEYS
        if key not in UNDRIVABLE_KEYS
    }
    if "accumulation" not in capabilities:
        out.pop("accumulation_steps")
    return out


@pytest.mark.requirement("RESUME-5")
def test_config_drift_fails_fast(harness: Harness, verdict: Verdict) -> None:
    """Changing each fingerprinted setting alone makes the resume fail before any change, naming that key."""
    saved = saved_run(harness, 2, 1)
    if not verdict.require(
        "RESUME-5", not saved.failure, f"could not produce a checkpoint:\n{saved.failure}"
    ):
        verdict.conclude()
    for key, changes in drifts(harness.capabilities).items():
        config = harness.fork(saved.config, **changes)
        result = harness.phase(config, 2, [FullState(), Resume(None), FullState()], may_fail={1})
        if not verdict.check(
            "RESUME-5",
            not result.missing,
            f"the resume with drifted {key} did not complete:\n{result.describe()}",
        ):
            continue
        refusal_checks(
            verdict, "RESUME-5", result, {1: f"a checkpoint with drifted {key} ({changes})"}
        )
        for rank, res in result.results(1).items():
            if res.error is None:
                continue
            named = set(res.error.details.get("differences", []))
            verdict.check(
                "RESUME-5",
                key in named or (not named and key in res.error.message),
                f"rank {rank}: the drift error for a changed {key} ({changes}) names {sorted(named) or res.error.short()}",
            )
    verdict.conclude()
