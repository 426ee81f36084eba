"""``ckptspec diff A B``: compare two checkpoints tensor by tensor with the canonical digest.

Each checkpoint is read in this one process, without a process group and without executing
code from it: DCP components through :func:`ckptspec.safe_dcp.safe_reader` into tensors
allocated from their stored metadata, ``torch_weights_only`` files with
``torch.load(weights_only=True)``, JSON as JSON. Leaves are compared by their canonical digest
(:mod:`ckptspec.digest`). A plain DCP directory without a manifest is read as one component.
Exit status: 0 identical, 1 different, 2 could not compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from ckptspec.cli import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from ckptspec.digest import json_digest, tensor_digest
from ckptspec.layout import LAYOUT
from ckptspec.safe_dcp import DCP_METADATA_FILE


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``diff``."""
    parser.add_argument("a", metavar="A", help="checkpoint directory (or plain DCP directory)")
    parser.add_argument("b", metavar="B", help="checkpoint directory (or plain DCP directory)")
    parser.add_argument("--ignore", action="append", default=[], metavar="COMPONENT", help="skip this component (repeatable)")
    parser.add_argument("--limit", type=int, default=50, help="print at most this many differences (default: 50)")


class CannotCompare(Exception):
    """A checkpoint could not be read."""


def _load_dcp(directory: Path) -> dict[str, Any]:
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    from ckptspec.safe_dcp import read_dcp_metadata, safe_planner, safe_reader

    metadata = read_dcp_metadata(directory)
    state: dict[str, Any] = {}
    for key, item in metadata.state_dict_metadata.items():
        if isinstance(item, TensorStorageMetadata):
            state[key] = torch.empty(item.size, dtype=item.properties.dtype)
        else:
            state[key] = None  # a non-tensor value, filled in by the planner
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, storage_reader=safe_reader(directory), planner=safe_planner(), no_dist=True)
    return state


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    import torch

    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}/{key}", out)
    elif isinstance(value, (list, tuple)) and not all(isinstance(v, (int, float, str, bool, type(None))) for v in value):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}/{index}", out)
    else:
        out[prefix] = value if isinstance(value, torch.Tensor) else json.loads(json.dumps(value))


def load_leaves(path: str | Path, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every leaf of the checkpoint at ``path``, keyed ``component/key/...``: tensors or JSON values."""
    import torch

    from ckptspec.manifest import Manifest

    root = Path(path)
    if not root.is_dir():
        raise CannotCompare(f"{root}: not a directory")
    leaves: dict[str, Any] = {}
    marker = root / LAYOUT.manifest_file
    if not marker.is_file():
        if not (root / DCP_METADATA_FILE).is_file():
            raise CannotCompare(f"{root}: neither a checkpoint (no {LAYOUT.manifest_file}) nor a DCP directory")
        _flatten(_load_dcp(root), "state", leaves)
        return leaves
    try:
        manifest = Manifest.model_validate_json(marker.read_bytes())
    except ValueError as exc:
        raise CannotCompare(f"{marker}: not a valid manifest ({exc.__class__.__name__})") from None
    for component in manifest.components:
        if component.name in ignore:
            continue
        if component.format == "dcp":
            directory = {Path(f.path).parts[0] for f in component.files}
            if len(directory) != 1:
                raise CannotCompare(f"{root}: DCP component {component.name!r} is not one directory")
            _flatten(_load_dcp(root / directory.pop()), component.name, leaves)
            continue
        for entry in component.files:
            file = root / entry.path
            if component.format == "json":
                value = json.loads(file.read_bytes())
            elif component.format == "torch_weights_only":
                value = torch.load(file, weights_only=True, map_location="cpu")
            else:
                raise CannotCompare(f"{root}: component {component.name!r} has format {component.format!r}, which diff does not read")
            _flatten(value, f"{component.name}/{entry.path}" if len(component.files) > 1 else component.name, leaves)
    return leaves


def _describe(name: str, a: Any, b: Any) -> str:
    import torch

    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"{name}: {a.dtype} {tuple(a.shape)} vs {b.dtype} {tuple(b.shape)}"
        if a.dtype.is_floating_point or a.dtype.is_complex:
            diff = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
        else:
            diff = (a.long() - b.long()).abs().max().item() if a.numel() else 0
        return f"{name}: {a.dtype} {tuple(a.shape)} max abs difference {diff:.6g}"
    return f"{name}: {_short(a)} vs {_short(b)}"


def _short(value: Any) -> str:
    text = repr(value) if not hasattr(value, "shape") else f"tensor {tuple(value.shape)}"
    return text if len(text) <= 80 else text[:77] + "..."


def _digest(value: Any) -> str:
    import torch

    return tensor_digest(value) if isinstance(value, torch.Tensor) else json_digest(value)


def compare(a: str | Path, b: str | Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """The differences between two checkpoints, one line each; empty when identical.
    Raises :class:`CannotCompare` when either cannot be read."""
    try:
        left, right = load_leaves(a, ignore), load_leaves(b, ignore)
    except CannotCompare:
        raise
    except Exception as exc:  # unreadable payloads: report, never a traceback
        raise CannotCompare(f"{type(exc).__name__}: {exc}") from None
    lines = []
    for name in sorted(left.keys() | right.keys()):
        if name not in right:
            lines.append(f"{name}: only in A")
        elif name not in left:
            lines.append(f"{name}: only in B")
        elif _digest(left[name]) != _digest(right[name]):
            lines.append(_describe(name, left[name], right[name]))
    return lines


def run(args: argparse.Namespace) -> int:
    """Compare A and B; print the differences; return the exit status."""
    try:
        lines = compare(args.a, args.b, tuple(args.ignore))
    except CannotCompare as exc:
        print(f"ckptspec diff: cannot compare: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for line in lines[: args.limit]:
        print(line)
    if len(lines) > args.limit:
        print(f"... and {len(lines) - args.limit} more")
    if lines:
        print(f"{len(lines)} difference(s)", file=sys.stderr)
        return EXIT_FAIL
    print("identical", file=sys.stderr)
    return EXIT_OK
