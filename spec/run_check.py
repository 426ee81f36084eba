"""Validating a run directory: every committed checkpoint, and `run.json` against them (run stage).

The committed checkpoint directories are the truth (a `step-*` directory with a manifest);
`run.json` and the `latest`/`best` links are an index that must agree with them. Staging
directories, the writer's lock file and the checkpoints in `.rewound/` are not part of the
run's listing and are not checked themselves.

What concurrent writers leave behind (RUN-8) is reported where it is visible: a discarded step
still committed in the listing by a save older than the rewind that discarded it
(`CONCURRENT_WRITERS`: a single writer saves such a step again only after the rewind), a rewind
record naming a discarded step that is not in its fork directory (`REWIND_RECORD`: the record is
false, whoever wrote it), and a step directory emptied under a writer (`UNCOMMITTED_STEP_DIR`).
"""

from __future__ import annotations

import os
import stat

from ckptspec.checkpoint_check import check_checkpoint
from ckptspec.documents import load_run_index
from ckptspec.findings import Finding, finding, json_pointer
from ckptspec.layout import LAYOUT, checkpoint_dir_name, step_directories
from ckptspec.manifest import Manifest
from ckptspec.run_index import Rewind, RunIndex


def _committed(
    directory: str, run_id: str, deep: bool
) -> tuple[dict[int, Manifest | None], list[Finding]]:
    """The committed checkpoints by step (manifest None when it is unusable), and their findings."""
    committed: dict[int, Manifest | None] = {}
    findings: list[Finding] = []
    for step, path in step_directories(directory):
        if not os.path.lexists(os.path.join(path, LAYOUT.manifest_file)):
            findings.append(
                finding(
                    "UNCOMMITTED_STEP_DIR",
                    path,
                    f"has no {LAYOUT.manifest_file}; readers ignore it, and it should be removed",
                )
            )
            continue
        manifest, checkpoint_findings = check_checkpoint(path, deep=deep, run_id=run_id)
        committed[step] = manifest
        findings += checkpoint_findings
    return committed, findings


def _link_problem(directory: str, name: str, step: int | None) -> str | None:
    """Why the pointer link ``name`` does not lead to the checkpoint of ``step`` (None if it does or is absent)."""
    link = os.path.join(directory, name)
    try:
        st = os.lstat(link)
    except FileNotFoundError:
        return None
    if not stat.S_ISLNK(st.st_mode):
        return "is not a symbolic link"
    target = os.path.realpath(link)
    if step is None:
        return f"points at {target}, but there is no such checkpoint"
    expected = os.path.realpath(os.path.join(directory, checkpoint_dir_name(step)))
    if target != expected:
        return f"points at {target}, expected {expected}"
    return None


def _check_index(
    directory: str,
    index_path: str,
    index: RunIndex,
    run_id: str,
    committed: dict[int, Manifest | None],
) -> list[Finding]:
    findings: list[Finding] = []
    if index.run_id != run_id:
        findings.append(
            finding(
                "RUN_INDEX_RUN_ID",
                index_path,
                f"run_id is {index.run_id!r} but the run directory is named {run_id!r}",
                json_pointer("run_id"),
            )
        )
    highest = max(committed, default=None)
    if index.latest_step != highest:
        findings.append(
            finding(
                "LATEST_MISMATCH",
                index_path,
                f"latest_step is {index.latest_step} but the highest committed step is {highest}",
                json_pointer("latest_step"),
            )
        )
    problem = _link_problem(directory, LAYOUT.latest_link, highest)
    if problem:
        findings.append(
            finding("LATEST_LINK", os.path.join(directory, LAYOUT.latest_link), problem)
        )
    best = index.best
    best_step = best.step if best is not None else None
    if best is not None and best.step is not None:
        if best.step not in committed:
            findings.append(
                finding(
                    "BEST_NOT_COMMITTED",
                    index_path,
                    f"best.step {best.step} is not a committed checkpoint of the run",
                    json_pointer("best", "step"),
                )
            )
        else:
            manifest = committed[best.step]
            metrics = (
                manifest.eval.metrics
                if manifest is not None and manifest.eval is not None
                else None
            )
            if manifest is not None and (metrics is None or metrics.get(best.metric) != best.score):
                actual = (
                    "no eval metrics"
                    if metrics is None
                    else f"{best.metric} = {metrics.get(best.metric, 'absent')}"
                )
                findings.append(
                    finding(
                        "BEST_SCORE_MISMATCH",
                        index_path,
                        f"best.score is {best.score} but step {best.step} has {actual}",
                        json_pointer("best", "score"),
                    )
                )
    problem = _link_problem(
        directory, LAYOUT.best_link, best_step if best_step in committed else None
    )
    if problem:
        findings.append(finding("BEST_LINK", os.path.join(directory, LAYOUT.best_link), problem))
    keep_last = index.retention.keep_last
    if keep_last is not None:
        kept = sorted(committed)[-keep_last:]
        allowed = keep_last + (1 if best_step in committed and best_step not in kept else 0)
        if len(committed) > allowed:
            findings.append(
                finding(
                    "RETENTION_EXCEEDED",
                    directory,
                    f"{len(committed)} committed checkpoints, but keep_last {keep_last} (plus the best) allows {allowed}",
                )
            )
    for wi, rewind in enumerate(index.rewinds):
        findings += _check_rewind(directory, index_path, wi, rewind, committed)
    return findings


def _timestamp_key(timestamp: str) -> tuple[str, str]:
    """An ordering key of a schema-valid UTC timestamp (fractions of any length)."""
    return timestamp[:19], timestamp[20:-1].ljust(9, "0")


def _check_rewind(
    directory: str, index_path: str, wi: int, rewind: Rewind, committed: dict[int, Manifest | None]
) -> list[Finding]:
    """The fork directory holds every discarded step (``REWIND_RECORD``), and no discarded step
    above the first is still committed by a save older than the rewind (``CONCURRENT_WRITERS``):
    a single writer saves those again only after it (the first may be the forking save itself,
    which started before its own rewind)."""
    moved = os.path.join(directory, *rewind.moved_to.split("/"))
    if not os.path.isdir(moved) or os.path.islink(moved):
        return [
            finding(
                "REWIND_RECORD",
                index_path,
                f"fork {rewind.fork_id!r}: {rewind.moved_to} is not a directory of the run",
                json_pointer("rewinds", wi, "moved_to"),
            )
        ]
    findings = []
    for si, step in enumerate(rewind.discarded_steps):
        name = checkpoint_dir_name(step)
        if not os.path.isdir(os.path.join(moved, name)) or os.path.islink(
            os.path.join(moved, name)
        ):
            findings.append(
                finding(
                    "REWIND_RECORD",
                    index_path,
                    f"fork {rewind.fork_id!r} records discarding step {step}, but {rewind.moved_to}/{name} does not exist",
                    json_pointer("rewinds", wi, "discarded_steps", si),
                )
            )
        manifest = committed.get(step)
        if (
            si > 0
            and manifest is not None
            and _timestamp_key(manifest.created_at) < _timestamp_key(rewind.at)
        ):
            findings.append(
                finding(
                    "CONCURRENT_WRITERS",
                    index_path,
                    f"fork {rewind.fork_id!r} at {rewind.at} discarded step {step}, but the committed {name} was created earlier ({manifest.created_at}): another writer shared the run, or the record is false",
                    json_pointer("rewinds", wi, "discarded_steps", si),
                )
            )
    return findings


def check_run(directory: str, *, deep: bool = False) -> list[Finding]:
    """Validate the run directory ``directory``: each committed checkpoint, then `run.json` against them.

    Raises ``OSError`` when the directory cannot be listed or a file it must read cannot be read.
    """
    run_id = os.path.basename(os.path.realpath(directory))
    committed, findings = _committed(directory, run_id, deep)
    index_path = os.path.join(directory, LAYOUT.run_index_file)
    if not os.path.isfile(index_path) or os.path.islink(index_path):
        findings.append(
            finding(
                "RUN_INDEX_MISSING",
                index_path,
                f"the run directory has no regular {LAYOUT.run_index_file}",
            )
        )
        return findings
    index, index_findings = load_run_index(index_path)
    findings += index_findings
    if index is not None:
        findings += _check_index(directory, index_path, index, run_id, committed)
    return findings
