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

from ckptspec.cli import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from ckptspec.documents import load_manifest, load_run_index
from ckptspec.findings import Finding
from ckptspec.foreign import ForeignSummary, infer
from ckptspec.layout import LAYOUT, is_staging_dir, parse_checkpoint_dir
from ckptspec.manifest import Manifest
from ckptspec.validator import CannotCheck, detect


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``inspect``."""
    parser.add_argument("path", metavar="PATH", help="checkpoint directory, run directory, manifest, or a DCP / Hugging Face directory")
    parser.add_argument("--files", action="store_true", help="list every file, not only per-component totals")


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
        f"topology    world_size {t.world_size} on {t.device_type}" + (f" ({t.backend})" if t.backend else "") + f", mesh {mesh}",
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
    lines.append(f"fingerprint {m.config.sha256[:16]}...  " + ", ".join(f"{k}={v!r}" for k, v in sorted(m.config.values.items()) if not isinstance(v, (dict, list))))
    rows = [("NAME", "KIND", "SHARING", "FORMAT", "RESHARDABLE", "FILES", "SIZE", "RANKS")]
    for c in m.components:
        size = sum(f.size for f in c.files)
        ranks = _rank_span(r for f in c.files for r in f.ranks)
        sharing = c.sharing + (f"/{c.group_size}" if c.group_size else "")
        rows.append((c.name, c.kind, sharing, c.format, "yes" if c.reshardable else "no", str(len(c.files)), human_size(size), ranks))
    total = sum(f.size for c in m.components for f in c.files)
    count = sum(len(c.files) for c in m.components)
    lines.append(f"components  {len(m.components)}, {count} files, {human_size(total)}")
    lines += _table(rows)
    if m.replication:
        checks = ", ".join(f"{q.component} ({'agree' if len({d.sha256 for d in q.digests}) == 1 else 'DISAGREE'} on {len(q.digests)} ranks)" for q in m.replication)
        lines.append(f"replication {checks}")
    if list_files:
        lines.append("files")
        lines += _table([("PATH", "SIZE", "RANKS", "SHA-256")] + [(f.path, str(f.size), _rank_span(f.ranks), f.sha256[:16] + "...") for c in m.components for f in c.files])
    return lines


def _committed_steps(directory: str) -> list[tuple[int, str]]:
    steps = []
    for name in os.listdir(directory):
        step = parse_checkpoint_dir(name)
        path = os.path.join(directory, name)
        if step is not None and os.path.isfile(os.path.join(path, LAYOUT.manifest_file)):
            steps.append((step, path))
    return sorted(steps)


def run_lines(directory: str) -> list[str]:
    """The summary of a run directory."""
    steps = _committed_steps(directory)
    names = os.listdir(directory)
    lines = [f"run         {directory}  ({len(steps)} committed checkpoint(s): {', '.join(str(s) for s, _ in steps) or 'none'})"]
    index_path = os.path.join(directory, LAYOUT.run_index_file)
    index, findings = load_run_index(index_path) if os.path.isfile(index_path) else (None, [])
    if index is None:
        lines.append(f"run.json    {'invalid (' + str(len(findings)) + ' finding(s))' if findings else 'absent'}")
    else:
        lines.append(f"latest      {steps[-1][0] if steps else None} (run.json says {index.latest_step})")
        if index.best is not None:
            b = index.best
            lines.append(f"best        {b.metric} ({b.mode}, min_delta {b.min_delta}): step {b.step}, score {b.score}")
        lines.append(f"retention   keep_last {index.retention.keep_last if index.retention.keep_last is not None else 'all'}")
        for w in index.rewinds:
            lines.append(f"rewind      {w.fork_id} at {w.at}: resumed from {w.resumed_from_step}, moved {w.discarded_steps} to {w.moved_to}")
    staging = [n for n in names if is_staging_dir(n)]
    if staging:
        lines.append(f"staging     {len(staging)} in-flight or abandoned save(s), ignored: {', '.join(sorted(staging))}")
    rows = [("STEP", "FILES", "SIZE", "EVAL")]
    for step, path in steps:
        m, _ = load_manifest(os.path.join(path, LAYOUT.manifest_file))
        if m is None:
            rows.append((str(step), "?", "?", "invalid manifest"))
            continue
        metrics = ", ".join(f"{k}={v:.6g}" for k, v in sorted(m.eval.metrics.items())) if m.eval else ""
        rows.append((str(step), str(sum(len(c.files) for c in m.components)), human_size(sum(f.size for c in m.components for f in c.files)), metrics))
    if steps:
        lines.append("checkpoints")
        lines += _table(rows)
    return lines


def foreign_lines(directory: str, summary: ForeignSummary) -> list[str]:
    """The summary of a directory without a manifest."""
    label = {"dcp": "a plain torch.distributed.checkpoint (DCP) directory", "huggingface": "a Hugging Face-style checkpoint directory"}
    lines = [
        f"{directory}: NOT a ckptspec checkpoint (no {LAYOUT.manifest_file}).",
        f"It looks like {label[summary.kind]}; what follows is inferred from its files, not checked against the spec."
        if summary.kind in label else "Nothing in it was recognised as a checkpoint format.",
    ]
    if summary.tensors:
        elements = sum(math.prod(t.shape) for t in summary.tensors)
        lines.append(f"tensors     {len(summary.tensors)}, {elements:,} elements")
        lines += _table([("NAME", "DTYPE", "SHAPE")] + [(t.name, t.dtype, "x".join(map(str, t.shape)) or "scalar") for t in summary.tensors])
    for entry in summary.opaque:
        lines.append(f"not loaded  {entry}")
    for note in summary.notes:
        lines.append(f"note        {note}")
    total = sum(size for _, size in summary.files)
    lines.append(f"files       {len(summary.files)} in the top directory, {human_size(total)}")
    lines += _table([("NAME", "SIZE")] + [(n, human_size(s)) for n, s in summary.files]) if summary.files else []
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the summary of ``args.path``; return the exit status."""
    path: str = args.path
    try:
        kind = detect(path)
        if kind in ("manifest", "checkpoint"):
            manifest_path = path if kind == "manifest" else os.path.join(path, LAYOUT.manifest_file)
            if kind == "checkpoint" and not os.path.isfile(manifest_path):
                summary = infer(path)
                print("\n".join(foreign_lines(path, summary)))
                return EXIT_OK if summary.kind != "unknown" else EXIT_FAIL
            manifest, findings = load_manifest(manifest_path)
            if manifest is None:
                print("\n".join(_invalid(manifest_path, findings)))
                return EXIT_FAIL
            print(f"checkpoint  {path}")
            print("\n".join(manifest_lines(manifest, args.files)))
            if findings:
                print(f"validation  {len(findings)} finding(s) in the manifest; run `ckptspec validate {path}`")
            return EXIT_OK
        if kind == "run_index":
            index, findings = load_run_index(path)
            if index is None:
                print("\n".join(_invalid(path, findings)))
                return EXIT_FAIL
            print(index.model_dump_json(indent=2))
            return EXIT_OK
        print("\n".join(run_lines(path)))
        return EXIT_OK
    except CannotCheck as exc:
        print(f"ckptspec inspect: cannot read {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"ckptspec inspect: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
