"""Typed errors a conformant trainer raises when it refuses to resume or to save (section *resume*).

Each carries a stable ``code`` and the requirement it enforces, and is raised before any live
state (or the run directory) is modified. The conformance suite recognises them by class, so adapters should raise
these (or subclasses) rather than generic exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class CheckpointError(Exception):
    """Base of every refusal to load a checkpoint."""

    code = "CKPT"
    requirement = ""

    def __init__(self, message: str) -> None:
        super().__init__(f"[{self.code}] {message}")
        self.message = message


class WorldSizeMismatchError(CheckpointError):
    """The checkpoint was written at another world size and holds rank-local state (RESUME-3)."""

    code = "RESUME_WORLD_SIZE"
    requirement = "RESUME-3"

    def __init__(self, saved: int, current: int, components: Iterable[str]) -> None:
        self.saved, self.current, self.components = saved, current, sorted(components)
        super().__init__(
            f"checkpoint was written at world size {saved} but this run has {current}; "
            f"rank-local components cannot be resharded: {', '.join(self.components)} "
            "(resume at the saved world size, or enable an elastic policy)"
        )


class GroupLayoutMismatchError(WorldSizeMismatchError):
    """The checkpoint was written at this world size but with other rank groups (another node
    layout, another group size) and holds ``per_node``/``per_group`` state of those groups: refused
    like a world-size change (RESUME-3)."""

    def __init__(self, world_size: int, regrouped: Mapping[str, tuple[int, int]]) -> None:
        self.saved = self.current = world_size
        self.components = sorted(regrouped)
        self.regrouped = dict(sorted(regrouped.items()))
        detail = ", ".join(
            f"{name}: group size {saved} in the checkpoint, {now} in this run"
            for name, (saved, now) in self.regrouped.items()
        )
        CheckpointError.__init__(
            self,
            f"checkpoint was written at world size {world_size} with other rank groups; grouped rank-local "
            f"components cannot be regrouped: {detail} (resume with the saved node layout, or enable an elastic policy)",
        )


class ConfigDriftError(CheckpointError):
    """Fingerprinted settings differ from the checkpoint's (RESUME-5)."""

    code = "RESUME_CONFIG_DRIFT"
    requirement = "RESUME-5"

    def __init__(self, differences: Mapping[str, tuple[Any, Any]]) -> None:
        self.differences = dict(sorted(differences.items()))
        detail = "; ".join(
            f"{k}: checkpoint {saved!r}, run {now!r}"
            for k, (saved, now) in self.differences.items()
        )
        super().__init__(
            f"config drift in {len(self.differences)} fingerprinted setting(s): {detail}"
        )


class IntegrityError(CheckpointError):
    """A checkpoint file is missing, truncated or corrupted (RESUME-6)."""

    code = "RESUME_INTEGRITY"
    requirement = "RESUME-6"

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("checkpoint failed its integrity check: " + "; ".join(self.problems))


class NoCheckpointError(CheckpointError):
    """A resume was asked for a checkpoint that does not exist or is not committed."""

    code = "RESUME_NO_CHECKPOINT"
    requirement = "LAYOUT-3"


class MidAccumulationError(CheckpointError):
    """A save was requested in the middle of a gradient-accumulation cycle (RESUME-9)."""

    code = "SAVE_MID_ACCUMULATION"
    requirement = "RESUME-9"

    def __init__(self, step: int, done: int, total: int) -> None:
        self.step, self.done, self.total = step, done, total
        super().__init__(
            f"cannot checkpoint step {step} in the middle of gradient accumulation: {done} of {total} "
            "micro-batches of the next optimizer step are accumulated; save at an optimizer-step boundary"
        )


class RunLockedError(CheckpointError):
    """Another writer holds the run directory's lock; this writer modified nothing (RUN-8)."""

    code = "RUN_LOCKED"
    requirement = "RUN-8"

    def __init__(self, run_dir: str, detail: str) -> None:
        self.run_dir, self.detail = run_dir, detail
        super().__init__(
            f"cannot claim run directory {run_dir} for this writer: {detail}; nothing was written"
        )


class RunStartupError(CheckpointError):
    """A writer's start-up failed on rank 0 after it claimed the run (``run.json`` or the run
    directory could not be read, listed or cleaned); raised on every rank alike, with rank 0's
    error named in the message. The claim is released; nothing is committed or rewound (RUN-8)."""

    code = "RUN_STARTUP"
    requirement = "RUN-8"

    def __init__(self, run_dir: str, detail: str) -> None:
        self.run_dir, self.detail = run_dir, detail
        super().__init__(
            f"start-up of the writer of run directory {run_dir} failed on rank 0: {detail}"
        )
