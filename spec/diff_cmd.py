"""``ckptspec diff A B``: compare two checkpoints tensor by tensor with the canonical digest.

Each checkpoint is read in this one process, without a process group and without executing
code from it, and through the same confined reader as ``validate``: the manifest within the
document limits (:mod:`ckptspec.jsonload`), every listed path resolved inside the checkpoint to
a regular file of its listed size (:mod:`ckptspec.confined`), and nothing else. DCP components
are read through :func:`ckptspec.safe_dcp.safe_reader` into tensors allocated from their stored
metadata, after checking that every storage entry of the metadata is a regular file inside the
directory and that the tensors fit in the bytes on disk; ``torch_weights_only`` files with
``torch.load(weights_only=True, mmap=True)``; JSON as JSON. Leaves are compared by their
canonical digest (:mod:`ckptspec.digest`); ``safetensors`` files with the ``safetensors``
package (a format without code). A plain DCP directory without a manifest is read as one
component. When one side is a weights-only export (``ckptspec export``: its manifest records
its source under ``extensions["ckptspec.export"]``), only the model components are compared, so
``diff SOURCE EXPORT`` answers "are these the source's weights?".

Errors are one line: torch's ``CheckpointException`` carries every rank's traceback in its
text, and only the first line of the first rank's exception is reported.

Exit status: 0 identical, 1 different, 2 could not compare (any failure to read, including
torch's ``CheckpointException``, which is a ``BaseException``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ckptspec import __version__
from ckptspec.confined import Resolved, resolve, scan_tree
from ckptspec.digest import json_digest, leaves, tensor_digest
from ckptspec.exit_codes import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from ckptspec.findings import CannotCheck, Severity, printable
from ckptspec.jsonload import read_document
from ckptspec.layout import LAYOUT
from ckptspec.safe_dcp import DCP_METADATA_FILE

DIFF_OUTPUT_VERSION = 2
"""Version of the ``--format json`` output shape; raised whenever a field changes meaning or goes away
(2: numbers as numbers: dtypes, shapes and the largest absolute difference as fields; ``compared``)."""

EXPORT_EXTENSION = "ckptspec.export"
"""The manifest ``extensions`` key under which an export records its source checkpoint."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``diff``."""
    parser.add_argument("a", metavar="A", help="checkpoint directory (or plain DCP directory)")
    parser.add_argument("b", metavar="B", help="checkpoint directory (or plain DCP directory)")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="COMPONENT",
        help="skip this component (repeatable)",
    )
    parser.add_argument(
        "--limit", type=int, default=50, help="print at most this many differences (default: 50)"
    )
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default: text)"
    )


class CannotCompare(Exception):
    """A checkpoint could not be read."""


class Difference(BaseModel):
    """One leaf that differs between A and B."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        description="The leaf, as `component/key/...` (`state/...` for a plain DCP directory)."
    )
    kind: Literal["only_in_a", "only_in_b", "different"] = Field(
        description="Whether the leaf is missing from one side or differs."
    )
    detail: str = Field(
        description="What differs, in words (dtype and shape, largest absolute difference, or both values)."
    )
    dtype_a: str | None = Field(
        default=None,
        description="The tensor's dtype in A; null for a JSON value or a leaf only in B.",
    )
    dtype_b: str | None = Field(
        default=None,
        description="The tensor's dtype in B; null for a JSON value or a leaf only in A.",
    )
    shape_a: list[int] | None = Field(
        default=None,
        description="The tensor's shape in A; null for a JSON value or a leaf only in B.",
    )
    shape_b: list[int] | None = Field(
        default=None,
        description="The tensor's shape in B; null for a JSON value or a leaf only in A.",
    )
    max_abs_difference: float | None = Field(
        default=None,
        description="The largest absolute elementwise difference of two tensors of one dtype and shape; null otherwise.",
    )


class DiffOutput(BaseModel):
    """The document ``ckptspec diff --format json`` prints (output version 2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    output: Literal["ckptspec-diff"] = Field(description="What this document is.")
    output_version: Literal[2] = Field(description="Version of this output shape.")
    tool: str = Field(description="The tool and its version, e.g. `ckptspec 0.1.0`.")
    a: str = Field(description="The first checkpoint, as given.")
    b: str = Field(description="The second checkpoint, as given.")
    ignored: list[str] = Field(
        description="Components skipped with `--ignore`, or because one side is a weights-only export."
    )
    compared: Literal["all", "model"] = Field(
        description="`model` when one side is an export and only model components were compared."
    )
    verdict: Literal["identical", "different", "not_compared"] = Field(
        description="Exit status 0, 1 and 2 respectively."
    )
    differences: list[Difference] = Field(
        description="Every difference, sorted by name (not cut by `--limit`)."
    )
    error: str | None = Field(
        description="Why the checkpoints could not be compared; null when they were."
    )


def _checkpoint_exceptions() -> tuple[type[BaseException], ...]:
    from torch.distributed.checkpoint.api import CheckpointException

    return (Exception, CheckpointException)  # CheckpointException derives from BaseException


def _dcp_storage_paths(directory: str, metadata: Any) -> set[str]:
    return {
        os.path.normpath(os.path.join(directory, info.relative_path)).replace(os.sep, "/")
        for info in (metadata.storage_data or {}).values()
    }


def _read_dcp(root: str, directory: str, available: dict[str, Resolved]) -> dict[str, Any]:
    """The state of the DCP directory ``directory`` (relative to ``root``, ``""`` for ``root`` itself),
    whose readable files (``root``-relative path -> resolution) are ``available``."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    from ckptspec.safe_dcp import read_metadata_bytes, safe_planner, safe_reader, unpickle_metadata

    metadata_rel = f"{directory}/{DCP_METADATA_FILE}" if directory else DCP_METADATA_FILE
    if metadata_rel not in available:
        raise CannotCompare(
            f"{root}: {metadata_rel} is not a readable regular file inside the checkpoint"
        )
    metadata_path = os.path.join(root, metadata_rel)
    metadata = unpickle_metadata(
        read_metadata_bytes(available[metadata_rel].real_path or metadata_path), metadata_path
    )
    for rel in sorted(_dcp_storage_paths(directory or ".", metadata)):
        rel = rel.removeprefix("./")
        if rel not in available:
            raise CannotCompare(
                f"{metadata_path}: storage entry {rel!r} is not a regular file inside the checkpoint (or not one it lists)"
            )
    on_disk = sum(
        r.size or 0
        for rel, r in available.items()
        if not directory or rel.startswith(directory + "/")
    )
    needed = 0
    for item in metadata.state_dict_metadata.values():
        if isinstance(item, TensorStorageMetadata):
            numel = 1
            for n in item.size:
                numel *= n
            needed += numel * item.properties.dtype.itemsize
            if needed > on_disk:
                raise CannotCompare(
                    f"{metadata_path}: its tensors need more than the {on_disk} bytes stored in the directory"
                )
    state: dict[str, Any] = {}
    for key, item in metadata.state_dict_metadata.items():
        if isinstance(item, TensorStorageMetadata):
            state[key] = torch.empty(item.size, dtype=item.properties.dtype)
        else:
            state[key] = None  # a non-tensor value, filled in by the planner
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(
            state,
            storage_reader=safe_reader(os.path.join(root, directory)),
            planner=safe_planner(),
            no_dist=True,
        )
    return state


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    """Add the leaves of ``value`` under ``prefix`` to ``out`` (the canonical digest's paths);
    JSON leaves are normalised through JSON, so that a tuple and a list compare equal."""
    import torch

    for path, leaf in leaves(value, prefix).items():
        out[path] = leaf if isinstance(leaf, torch.Tensor) else json.loads(json.dumps(leaf))


def _plain_dcp(root: str) -> dict[str, Resolved]:
    """The regular files directly inside a plain DCP directory, resolved as ``validate`` would."""
    real_root = os.path.realpath(root)
    tree = scan_tree(root)
    found = {rel: resolve(root, real_root, tree, rel) for rel in tree if "/" not in rel}
    return {rel: r for rel, r in found.items() if r.status == "ok"}


def load_dcp_state(directory: str | Path) -> dict[str, Any]:
    """The state of the plain DCP directory ``directory``, read confined to its own regular files
    (used by ``diff`` and by the reference trainer's export). Raises :class:`CannotCompare`, the
    errors of :mod:`ckptspec.safe_dcp`, or torch's exceptions."""
    root = os.fspath(directory)
    return _read_dcp(root, "", _plain_dcp(root))


def _checked_files(root: str) -> tuple[Any, dict[str, Resolved]]:
    """The manifest of the checkpoint ``root`` and its listed files, or :class:`CannotCompare` with
    the first finding that makes a file unreadable (missing, not regular, outside, wrong size)."""
    from ckptspec.checkpoint_check import check_checkpoint

    manifest, findings = check_checkpoint(root, deep=False)
    blocking = [
        f for f in findings if f.severity is Severity.ERROR and f.code not in _COMPARABLE_CODES
    ]
    if manifest is None or blocking:
        first = (blocking or findings)[0]
        raise CannotCompare(f"{root} is not a checkpoint that can be read safely: {first.line()}")
    real_root = os.path.realpath(root)
    tree = scan_tree(root)
    return manifest, {
        f.path: resolve(root, real_root, tree, f.path) for c in manifest.components for f in c.files
    }


_COMPARABLE_CODES = frozenset({"DIR_STEP_MISMATCH", "CHECKPOINT_RUN_ID"}) | {
    code
    for code in (
        "STEP_MISMATCH",
        "ACCUMULATION_MISMATCH",
        "PER_RANK_COVERAGE",
        "GROUP_COVERAGE",
        "SHARDED_FORMAT",
        "RESHARDABLE_FLAG",
        "RESUMABLE_INCOMPLETE",
        "MESH_WORLD_SIZE",
        "RANK_OUT_OF_RANGE",
        "FINGERPRINT_KEYS",
        "FINGERPRINT_DIGEST",
        "REPLICATION_MISMATCH",
        "REPLICATION_INVALID",
        "STEP_COUNT_MISMATCH",
        "RESUME_RECORD",
        "DUPLICATE_COMPONENT",
    )
}
"""Errors that leave every listed file readable: a checkpoint with them can still be compared."""


def load_leaves(path: str | Path, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every leaf of the checkpoint at ``path``, keyed ``component/key/...``: tensors or JSON values.

    Raises :class:`CannotCompare` when the checkpoint cannot be read within the confined reader's rules.
    """
    import torch

    root = os.fspath(path)
    if not os.path.isdir(root):
        raise CannotCompare(f"{root}: not a directory")
    found: dict[str, Any] = {}
    if not os.path.lexists(os.path.join(root, LAYOUT.manifest_file)):
        if not os.path.lexists(os.path.join(root, DCP_METADATA_FILE)):
            raise CannotCompare(
                f"{root}: neither a checkpoint (no {LAYOUT.manifest_file}) nor a DCP directory (no {DCP_METADATA_FILE})"
            )
        _flatten(load_dcp_state(root), "state", found)
        return found
    manifest, files = _checked_files(root)
    for component in manifest.components:
        if component.name in ignore:
            continue
        own = {f.path: files[f.path] for f in component.files}
        if component.format == "dcp":
            directory = {f.path.split("/")[0] for f in component.files}
            if len(directory) != 1 or any("/" not in p for p in own):
                raise CannotCompare(
                    f"{root}: DCP component {component.name!r} is not one directory"
                )
            _flatten(_read_dcp(root, directory.pop(), own), component.name, found)
            continue
        for entry in component.files:
            real = own[entry.path].real_path or os.path.join(root, entry.path)
            if component.format == "json":
                value, problems = read_document(real)
                if problems:
                    raise CannotCompare(problems[0].line())
            elif component.format == "safetensors":
                from safetensors.torch import load_file

                value = load_file(real, device="cpu")
            elif component.format == "torch_weights_only":
                value = torch.load(real, weights_only=True, map_location="cpu", mmap=True)
            else:
                raise CannotCompare(
                    f"{root}: component {component.name!r} has format {component.format!r}, which diff does not read"
                )
            _flatten(
                value,
                f"{component.name}/{entry.path}" if len(component.files) > 1 else component.name,
                found,
            )
    return found


def _tensor_fields(value: Any, side: str) -> dict[str, Any]:
    import torch

    if not isinstance(value, torch.Tensor):
        return {}
    return {
        f"dtype_{side}": str(value.dtype).removeprefix("torch."),
        f"shape_{side}": list(value.shape),
    }


def _different(name: str, a: Any, b: Any) -> Difference:
    """The difference of two leaves that differ: in words, and as numbers where they are tensors."""
    import torch

    fields = {**_tensor_fields(a, "a"), **_tensor_fields(b, "b")}
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            detail = f"{a.dtype} {tuple(a.shape)} vs {b.dtype} {tuple(b.shape)}"
        else:
            if a.dtype.is_floating_point or a.dtype.is_complex:
                diff = float((a.double() - b.double()).abs().max().item()) if a.numel() else 0.0
            else:
                diff = float((a.long() - b.long()).abs().max().item()) if a.numel() else 0.0
            fields["max_abs_difference"] = diff
            detail = f"{a.dtype} {tuple(a.shape)} max abs difference {diff:.6g}"
    else:
        detail = f"{_short(a)} vs {_short(b)}"
    return Difference(name=name, kind="different", detail=detail, **fields)


def _short(value: Any) -> str:
    text = repr(value) if not hasattr(value, "shape") else f"tensor {tuple(value.shape)}"
    return text if len(text) <= 80 else text[:77] + "..."


def _digest(value: Any) -> str:
    import torch

    return tensor_digest(value) if isinstance(value, torch.Tensor) else json_digest(value)


def one_line(exc: BaseException) -> str:
    """``exc`` as one line: for torch's ``CheckpointException`` (whose text folds in every rank's
    traceback) the first rank's exception; otherwise the first line of its text, at most 300 characters."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        first = next(iter(failures.values()))
        inner = first[0] if isinstance(first, tuple) else first
        if isinstance(inner, BaseException):
            return one_line(inner)
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _components(root: str | Path) -> list[Any] | None:
    """The components of the checkpoint at ``root`` when it has a valid manifest, else None."""
    from ckptspec.documents import load_manifest

    try:
        manifest, _ = load_manifest(os.path.join(os.fspath(root), LAYOUT.manifest_file))
    except (OSError, CannotCheck):  # unreadable, or of a newer minor: compared as plain DCP
        return None
    return list(manifest.components) if manifest else None


def export_scope(a: str | Path, b: str | Path) -> tuple[str, ...]:
    """The components not to compare because one side is a weights-only export: every component
    of either side whose kind is not ``model``; empty when neither is an export."""
    from ckptspec.documents import load_manifest

    def is_export(root: str | Path) -> bool:
        try:
            manifest, _ = load_manifest(os.path.join(os.fspath(root), LAYOUT.manifest_file))
        except (OSError, CannotCheck):
            return False
        return manifest is not None and EXPORT_EXTENSION in (manifest.extensions or {})

    if not (is_export(a) or is_export(b)):
        return ()
    return tuple(
        sorted({c.name for root in (a, b) for c in _components(root) or () if c.kind != "model"})
    )


def differences(a: str | Path, b: str | Path, ignore: tuple[str, ...] = ()) -> list[Difference]:
    """The differences between two checkpoints, sorted by leaf name; empty when identical.
    Raises :class:`CannotCompare` (with a one-line message) when either cannot be read."""
    try:
        left, right = load_leaves(a, ignore), load_leaves(b, ignore)
        found = []
        for name in sorted(left.keys() | right.keys()):
            if name not in right:
                found.append(
                    Difference(
                        name=name,
                        kind="only_in_a",
                        detail="only in A",
                        **_tensor_fields(left[name], "a"),
                    )
                )
            elif name not in left:
                found.append(
                    Difference(
                        name=name,
                        kind="only_in_b",
                        detail="only in B",
                        **_tensor_fields(right[name], "b"),
                    )
                )
            elif _digest(left[name]) != _digest(right[name]):
                found.append(_different(name, left[name], right[name]))
        return found
    except CannotCompare:
        raise
    except _checkpoint_exceptions() as exc:  # unreadable payloads: report, never a traceback
        raise CannotCompare(one_line(exc)) from None


def compare(a: str | Path, b: str | Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """The differences between two checkpoints, one line each; empty when identical.
    Raises :class:`CannotCompare` when either cannot be read."""
    return [f"{d.name}: {d.detail}" for d in differences(a, b, ignore)]


def run(args: argparse.Namespace) -> int:
    """Compare A and B; print the differences; return the exit status."""
    error: str | None = None
    found: list[Difference] = []
    scope = export_scope(args.a, args.b)
    ignored = sorted(set(args.ignore) | set(scope))
    try:
        found = differences(args.a, args.b, tuple(ignored))
    except CannotCompare as exc:
        error = str(exc)
    status = EXIT_ERROR if error is not None else (EXIT_FAIL if found else EXIT_OK)
    if args.format == "json":
        verdict: Literal["identical", "different", "not_compared"] = {
            EXIT_OK: "identical",
            EXIT_FAIL: "different",
            EXIT_ERROR: "not_compared",
        }[status]  # type: ignore[assignment]
        document = DiffOutput(
            output="ckptspec-diff",
            output_version=DIFF_OUTPUT_VERSION,
            tool=f"ckptspec {__version__}",
            a=str(args.a),
            b=str(args.b),
            ignored=ignored,
            compared="model" if scope else "all",
            verdict=verdict,
            differences=found,
            error=error,
        )
        print(document.model_dump_json(indent=2))
        return status
    if error is not None:
        print(printable(f"ckptspec diff: cannot compare: {error}"), file=sys.stderr)
        return status
    if scope:
        print(
            f"one side is a weights-only export: comparing the model only (not {', '.join(scope)})",
            file=sys.stderr,
        )
    for d in found[: args.limit]:
        print(printable(f"{d.name}: {d.detail}"))
    if len(found) > args.limit:
        print(f"... and {len(found) - args.limit} more")
    print(f"{len(found)} difference(s)" if found else "identical", file=sys.stderr)
    return status
