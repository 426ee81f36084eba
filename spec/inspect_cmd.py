"""``ckptspec inspect PATH``: a readable summary of a checkpoint, a run, a manifest, or a directory
without a manifest (plain DCP or Hugging Face style, inferred and labelled as such).

Inspection only reads, never unpickles, and imports torch only to read a plain DCP `.metadata`.
Exit status: 0 summarised, 1 the path holds nothing that could be summarised (an invalid
manifest, an unrecognised directory), 2 the path cannot be read.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ckptspec import __version__
from ckptspec.documents import load_manifest, load_run_index
from ckptspec.exit_codes import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from ckptspec.findings import Finding, printable
from ckptspec.foreign import ForeignSummary, TensorInfo, infer
from ckptspec.layout import LAYOUT, checkpoint_dir_name, committed_steps, is_staging_dir
from ckptspec.manifest import Manifest
from ckptspec.run_index import RunIndex
from ckptspec.validator import CannotCheck, detect

INSPECT_OUTPUT_VERSION = 1
"""Version of the ``--format json`` output shape; raised whenever a field changes meaning or goes away."""

InspectKind = Literal["checkpoint", "manifest", "run_index", "run", "dcp", "huggingface", "unknown"]


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorEntry(_Output):
    """A tensor as the metadata of a directory without a manifest describes it."""

    name: str
    dtype: str
    shape: list[int]


class FileSize(_Output):
    """A regular file and its size in bytes."""

    path: str
    size: int


class RunCheckpoint(_Output):
    """One committed checkpoint of a run, as its manifest describes it."""

    step: int
    path: str
    valid: bool = Field(description="Whether its manifest could be read (structure valid).")
    files: int | None = Field(
        description="Number of listed files; null when the manifest is invalid."
    )
    size: int | None = Field(description="Total listed bytes; null when the manifest is invalid.")
    eval: dict[str, float] = Field(description="Eval metrics of the checkpoint, if any.")


class InspectOutput(_Output):
    """The document ``ckptspec inspect --format json`` prints (output version 1)."""

    output: Literal["ckptspec-inspect"] = Field(description="What this document is.")
    output_version: Literal[1] = Field(description="Version of this output shape.")
    tool: str = Field(description="The tool and its version, e.g. `ckptspec 0.1.0`.")
    path: str = Field(description="The path inspected, as given.")
    kind: InspectKind | None = Field(
        description="What the path is (`dcp`, `huggingface` and `unknown`: a directory without a manifest, inferred, not checked); null when it cannot be read."
    )
    summarised: bool = Field(description="Whether a summary could be made (exit status 0).")
    manifest: Manifest | None = Field(
        default=None,
        description="The manifest, for a checkpoint or manifest whose structure is valid.",
    )
    run_index: RunIndex | None = Field(
        default=None, description="The run index, for a run or `run.json` whose structure is valid."
    )
    checkpoints: list[RunCheckpoint] = Field(
        default_factory=list, description="For a run: its committed checkpoints, ascending."
    )
    staging: list[str] = Field(
        default_factory=list,
        description="For a run: in-flight or abandoned staging directories (ignored by readers).",
    )
    tensors: list[TensorEntry] = Field(
        default_factory=list,
        description="For a directory without a manifest: tensors its metadata describes.",
    )
    opaque: list[str] = Field(
        default_factory=list, description="Entries whose contents were not inspected, with why."
    )
    notes: list[str] = Field(
        default_factory=list, description="What else was learnt, or could not be read."
    )
    files: list[FileSize] = Field(
        default_factory=list,
        description="For a directory without a manifest: the regular files of its top directory.",
    )
    findings: list[Finding] = Field(
        default_factory=list,
        description="Findings in the manifest or run index (`validate` gives the complete check).",
    )
    error: str | None = Field(
        default=None, description="Why the path could not be read (exit status 2); null otherwise."
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``inspect``."""
    parser.add_argument(
        "path",
        metavar="PATH",
        help="checkpoint directory, run directory, manifest, or a DCP / Hugging Face directory",
    )
    parser.add_argument(
        "--files", action="store_true", help="list every file, not only per-component totals"
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )


def human_size(size: int) -> str:
    """``size`` bytes as a short human-readable string (binary units)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"


def _rank_span(ranks: Iterable[int]) -> str:
    ordered = sorted(set(ranks))
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{ordered[0]}-{ordered[-1]}"
    return ",".join(map(str, ordered))


def _table(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _invalid(path: str, findings: list[Finding]) -> list[str]:
    lines = [f"{path}: the manifest cannot be summarised ({len(findings)} finding(s)):"]
    lines += ["  " + f.line() for f in findings[:20]]
    if len(findings) > 20:
        lines.append(f"  ... and {len(findings) - 20} more (run `ckptspec validate`)")
    return lines


def manifest_lines(m: Manifest, list_files: bool) -> list[str]:
    """The summary of one manifest."""
    t, p = m.topology, m.progress
    mesh = " x ".join(f"{d.name}={d.size}" for d in t.mesh)
    torch_v = f", torch {m.producer.torch_version}" if m.producer.torch_version else ""
    lines = [
        f"run_id      {m.run_id}",
        f"step        {m.step}    created {m.created_at}    spec {m.spec_version}",
        f"producer    {m.producer.name} {m.producer.version}{torch_v}",
        f"topology    world_size {t.world_size} on {t.device_type}"
        + (f" ({t.backend})" if t.backend else "")
        + f", mesh {mesh}",
        f"progress    global_step {p.global_step}, epoch {p.epoch}, batches_in_epoch {p.batches_in_epoch}, "
        f"samples_in_epoch {p.samples_in_epoch}, samples_seen {p.samples_seen}, accumulation_steps {p.accumulation_steps}",
    ]
    if m.eval is not None:
        metrics = ", ".join(f"{k}={v:.6g}" for k, v in sorted(m.eval.metrics.items()))
        lines.append(f"eval        {metrics} over {m.eval.samples} samples")
    else:
        lines.append("eval        none")
    resumable = "yes" if m.resumable else "no (e.g. a weights-only export)"
    if m.resumed_from is not None:
        r = m.resumed_from
        resumable += f"; written after resuming from step {r.step} at world size {r.world_size}"
        if r.elastic:
            resumable += f" (elastic, re-derived: {', '.join(r.rederived)})"
    lines.append(f"resumable   {resumable}")
    lines.append(
        f"fingerprint {m.config.sha256[:16]}...  "
        + ", ".join(
            f"{k}={v!r}"
            for k, v in sorted(m.config.values.items())
            if not isinstance(v, (dict, list))
        )
    )
    rows = [("NAME", "KIND", "SHARING", "FORMAT", "RESHARDABLE", "FILES", "SIZE", "RANKS")]
    for c in m.components:
        size = sum(f.size for f in c.files)
        ranks = _rank_span(r for f in c.files for r in f.ranks)
        sharing = c.sharing + (f"/{c.group_size}" if c.group_size else "")
        rows.append(
            (
                c.name,
                c.kind,
                sharing,
                c.format,
                "yes" if c.reshardable else "no",
                str(len(c.files)),
                human_size(size),
                ranks,
            )
        )
    total = sum(f.size for c in m.components for f in c.files)
    count = sum(len(c.files) for c in m.components)
    lines.append(f"components  {len(m.components)}, {count} files, {human_size(total)}")
    lines += _table(rows)
    if m.replication:
        checks = ", ".join(
            f"{q.component} ({'agree' if len({d.sha256 for d in q.digests}) == 1 else 'DISAGREE'} on {len(q.digests)} ranks)"
            for q in m.replication
        )
        lines.append(f"replication {checks}")
    if list_files:
        lines.append("files")
        lines += _table(
            [("PATH", "SIZE", "RANKS", "DIGEST")]
            + [
                (f.path, str(f.size), _rank_span(f.ranks), f.digest[:25] + "...")
                for c in m.components
                for f in c.files
            ]
        )
    return lines


def run_lines(directory: str) -> list[str]:
    """The summary of a run directory."""
    checkpoints, index, findings, staging = _committed(directory)
    return _run_lines(directory, checkpoints, index, findings, staging)


def _run_lines(
    directory: str,
    checkpoints: list[RunCheckpoint],
    index: RunIndex | None,
    findings: list[Finding],
    staging: list[str],
) -> list[str]:
    steps = ", ".join(str(c.step) for c in checkpoints) or "none"
    lines = [f"run         {directory}  ({len(checkpoints)} committed checkpoint(s): {steps})"]
    if index is None:
        lines.append(
            f"run.json    {'invalid (' + str(len(findings)) + ' finding(s))' if findings else 'absent'}"
        )
    else:
        lines.append(
            f"latest      {checkpoints[-1].step if checkpoints else None} (run.json says {index.latest_step})"
        )
        if index.best is not None:
            b = index.best
            lines.append(
                f"best        {b.metric} ({b.mode}, min_delta {b.min_delta}): step {b.step}, score {b.score}"
            )
        lines.append(
            f"retention   keep_last {index.retention.keep_last if index.retention.keep_last is not None else 'all'}"
        )
        for w in index.rewinds:
            lines.append(
                f"rewind      {w.fork_id} at {w.at}: resumed from {w.resumed_from_step}, moved {w.discarded_steps} to {w.moved_to}"
            )
    if staging:
        lines.append(
            f"staging     {len(staging)} in-flight or abandoned save(s), ignored: {', '.join(staging)}"
        )
    rows = [("STEP", "FILES", "SIZE", "EVAL")]
    for c in checkpoints:
        if c.files is None or c.size is None:
            rows.append((str(c.step), "?", "?", "invalid manifest"))
        else:
            rows.append(
                (
                    str(c.step),
                    str(c.files),
                    human_size(c.size),
                    ", ".join(f"{k}={v:.6g}" for k, v in sorted(c.eval.items())),
                )
            )
    if checkpoints:
        lines.append("checkpoints")
        lines += _table(rows)
    return lines


def foreign_lines(directory: str, summary: ForeignSummary) -> list[str]:
    """The summary of a directory without a manifest."""
    label = {
        "dcp": "a plain torch.distributed.checkpoint (DCP) directory",
        "huggingface": "a Hugging Face-style checkpoint directory",
    }
    lines = [
        f"{directory}: NOT a ckptspec checkpoint (no {LAYOUT.manifest_file}).",
        f"It looks like {label[summary.kind]}; what follows is inferred from its files, not checked against the spec."
        if summary.kind in label
        else "Nothing in it was recognised as a checkpoint format.",
    ]
    if summary.tensors:
        elements = sum(math.prod(t.shape) for t in summary.tensors)
        count = (
            f"{elements:,}" if elements < 10**30 else "more than 10^30"
        )  # never a number past Python's 4300-digit limit
        lines.append(f"tensors     {len(summary.tensors)}, {count} elements")
        lines += _table(
            [("NAME", "DTYPE", "SHAPE")]
            + [(t.name, t.dtype, "x".join(map(str, t.shape)) or "scalar") for t in summary.tensors]
        )
    for entry in summary.opaque:
        lines.append(f"not loaded  {entry}")
    for note in summary.notes:
        lines.append(f"note        {note}")
    total = sum(size for _, size in summary.files)
    lines.append(f"files       {len(summary.files)} in the top directory, {human_size(total)}")
    lines += (
        _table([("NAME", "SIZE")] + [(n, human_size(s)) for n, s in summary.files])
        if summary.files
        else []
    )
    return lines


def _print(lines: Iterable[str]) -> None:
    print("\n".join(printable(line) for line in lines))


def _committed(
    directory: str,
) -> tuple[list[RunCheckpoint], RunIndex | None, list[Finding], list[str]]:
    checkpoints = []
    for step in committed_steps(directory):
        path = os.path.join(directory, checkpoint_dir_name(step))
        try:
            m, _ = load_manifest(os.path.join(path, LAYOUT.manifest_file))
        except (
            OSError
        ):  # committed by name and marker, but the marker cannot be read: shown as invalid
            m = None
        checkpoints.append(
            RunCheckpoint(
                step=step,
                path=path,
                valid=m is not None,
                files=None if m is None else sum(len(c.files) for c in m.components),
                size=None if m is None else sum(f.size for c in m.components for f in c.files),
                eval={} if m is None or m.eval is None else dict(m.eval.metrics),
            )
        )
    index_path = os.path.join(directory, LAYOUT.run_index_file)
    index, findings = load_run_index(index_path) if os.path.isfile(index_path) else (None, [])
    staging = sorted(n for n in os.listdir(directory) if is_staging_dir(n))
    return checkpoints, index, findings, staging


def inspect_document(path: str) -> InspectOutput:
    """The ``--format json`` document for ``path``; its ``summarised`` and ``error`` give the exit status."""
    base = {
        "output": "ckptspec-inspect",
        "output_version": INSPECT_OUTPUT_VERSION,
        "tool": f"ckptspec {__version__}",
        "path": path,
    }
    try:
        kind = detect(path)
        if kind in ("manifest", "checkpoint"):
            manifest_path = path if kind == "manifest" else os.path.join(path, LAYOUT.manifest_file)
            if kind == "checkpoint" and not os.path.isfile(manifest_path):
                summary = infer(path)
                return InspectOutput(
                    **base,
                    kind=summary.kind,
                    summarised=summary.kind != "unknown",  # type: ignore[arg-type]
                    tensors=[
                        TensorEntry(name=t.name, dtype=t.dtype, shape=list(t.shape))
                        for t in summary.tensors
                    ],
                    opaque=summary.opaque,
                    notes=summary.notes,
                    files=[FileSize(path=n, size=z) for n, z in summary.files],
                )
            manifest, findings = load_manifest(_named_file(manifest_path))
            return InspectOutput(
                **base,
                kind=kind,
                summarised=manifest is not None,
                manifest=manifest,
                findings=findings,
            )
        if kind == "run_index":
            index, findings = load_run_index(_named_file(path))
            return InspectOutput(
                **base, kind=kind, summarised=index is not None, run_index=index, findings=findings
            )
        checkpoints, index, findings, staging = _committed(path)
        return InspectOutput(
            **base,
            kind="run",
            summarised=True,
            run_index=index,
            findings=findings,
            checkpoints=checkpoints,
            staging=staging,
        )
    except CannotCheck as exc:
        return InspectOutput(**base, kind=None, summarised=False, error=str(exc))
    except OSError as exc:
        return InspectOutput(
            **base, kind=None, summarised=False, error=f"{path}: {exc.strerror or exc}"
        )


def _named_file(path: str) -> str:
    from ckptspec.validate_cmd import named_file

    return named_file(path)


def run(args: argparse.Namespace) -> int:
    """Print the summary of ``args.path`` (text or ``--format json``); return the exit status."""
    document = inspect_document(args.path)
    status = (
        EXIT_ERROR
        if document.error is not None
        else (EXIT_OK if document.summarised else EXIT_FAIL)
    )
    if args.format == "json":
        print(document.model_dump_json(indent=2))
        return status
    path, kind = args.path, document.kind
    if document.error is not None:
        print(printable(f"ckptspec inspect: cannot read {document.error}"), file=sys.stderr)
    elif kind in ("checkpoint", "manifest"):
        if document.manifest is None:
            _print(
                _invalid(
                    path if kind == "manifest" else os.path.join(path, LAYOUT.manifest_file),
                    document.findings,
                )
            )
        else:
            _print([f"checkpoint  {path}", *manifest_lines(document.manifest, args.files)])
            if document.findings:
                _print(
                    [
                        f"validation  {len(document.findings)} finding(s) in the manifest; run `ckptspec validate {path}`"
                    ]
                )
    elif kind == "run_index":
        if document.run_index is not None:
            print(document.run_index.model_dump_json(indent=2))
        else:
            _print(_invalid(path, document.findings))
    elif kind == "run":
        _print(
            _run_lines(
                path, document.checkpoints, document.run_index, document.findings, document.staging
            )
        )
    else:
        summary = ForeignSummary(
            str(kind),
            tensors=[TensorInfo(t.name, t.dtype, tuple(t.shape)) for t in document.tensors],
            opaque=document.opaque,
            files=[(f.path, f.size) for f in document.files],
            notes=document.notes,
        )
        _print(foreign_lines(path, summary))
    return status
