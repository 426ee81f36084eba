"""What can be learnt, safely, from a checkpoint directory that has no ckptspec manifest.

Two kinds are recognised: a plain torch.distributed.checkpoint (DCP) directory, whose `.metadata`
is read only through :func:`ckptspec.safe_dcp.read_dcp_metadata` (torch is imported then, and
only then), and a Hugging Face-style directory, whose `*.safetensors` headers are parsed here
(8-byte little-endian length, then JSON) and whose pickles are never loaded.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from typing import Any

from ckptspec.jsonload import parse_document

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
"""Largest safetensors header read (the format's own readers use the same bound)."""

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
"""File name endings of torch.save/pickle payloads: reported, never loaded."""


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as a file's metadata describes it."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass
class ForeignSummary:
    """What was inferred from a directory without a manifest."""

    kind: str  # "dcp", "huggingface" or "unknown"
    tensors: list[TensorInfo] = field(default_factory=list)
    opaque: list[str] = field(
        default_factory=list
    )  # entries whose contents were not inspected, with why
    files: list[tuple[str, int]] = field(
        default_factory=list
    )  # (relative path, size) of regular files
    notes: list[str] = field(default_factory=list)


def _regular_files(directory: str) -> list[tuple[str, int]]:
    out = []
    for name in sorted(os.listdir(directory)):
        st = os.lstat(os.path.join(directory, name))
        if stat.S_ISREG(st.st_mode):
            out.append((name, st.st_size))
    return out


def read_safetensors_header(path: str) -> dict[str, Any]:
    """The JSON header of a safetensors file; raises ``ValueError`` when it is not one."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise ValueError("shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_SAFETENSORS_HEADER:
            raise ValueError(f"header length {length} exceeds {MAX_SAFETENSORS_HEADER}")
        data = f.read(length)
    if len(data) != length:
        raise ValueError(f"header truncated: {len(data)} of {length} bytes")
    header, problems = parse_document(data, path)
    if problems:
        raise ValueError(problems[0].message)
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def _safetensors_tensors(path: str, prefix: str) -> list[TensorInfo]:
    tensors = []
    for name, entry in read_safetensors_header(path).items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list):
            raise ValueError(f"entry {name!r} is not a tensor description")
        shape = tuple(int(s) for s in entry["shape"] if isinstance(s, int))
        tensors.append(TensorInfo(f"{prefix}{name}", str(entry.get("dtype", "?")), shape))
    return tensors


def _dcp(directory: str, prefix: str, summary: ForeignSummary) -> None:
    from ckptspec.safe_dcp import UnsafeCheckpointError, read_dcp_metadata

    try:
        metadata = read_dcp_metadata(directory)
    except (UnsafeCheckpointError, OSError) as exc:
        summary.notes.append(f"{prefix}.metadata could not be read safely: {exc}")
        return
    for fqn, meta in sorted(metadata.state_dict_metadata.items()):
        properties = getattr(meta, "properties", None)
        size = getattr(meta, "size", None)
        if properties is not None and size is not None:
            dtype = str(properties.dtype).removeprefix("torch.")
            summary.tensors.append(TensorInfo(f"{prefix}{fqn}", dtype, tuple(int(s) for s in size)))
        else:
            summary.opaque.append(
                f"{prefix}{fqn}: non-tensor value (stored with torch.save; not loaded)"
            )


def _hf_notes(directory: str, names: set[str], summary: ForeignSummary) -> None:
    config = (
        optional_json(os.path.join(directory, "config.json")) if "config.json" in names else None
    )
    if isinstance(config, dict):
        summary.notes.append(
            f"config.json: model_type {config.get('model_type')!r}, architectures {config.get('architectures')!r}"
        )
    state = (
        optional_json(os.path.join(directory, "trainer_state.json"))
        if "trainer_state.json" in names
        else None
    )
    if isinstance(state, dict):
        summary.notes.append(
            f"trainer_state.json: global_step {state.get('global_step')!r}, epoch {state.get('epoch')!r}"
        )


def infer(directory: str) -> ForeignSummary:
    """Inspect ``directory`` (which has no manifest) without executing anything from it.

    A directory holding `.metadata`, or subdirectories that do, is taken as DCP; one holding
    safetensors files, `pytorch_model.bin`, `training_state.pt` or `config.json` as Hugging
    Face-style. Raises ``OSError`` when it cannot be listed.
    """
    files = _regular_files(directory)
    names = {name for name, _ in files}
    if ".metadata" in names:
        summary = ForeignSummary("dcp", files=files)
        _dcp(directory, "", summary)
        return summary
    subdirs = dcp_subdirectories(directory)
    if subdirs:
        summary = ForeignSummary("dcp", files=files)
        for sub in subdirs:
            _dcp(os.path.join(directory, sub), f"{sub}/", summary)
        return summary
    hf_markers = ("pytorch_model.bin", "training_state.pt", "config.json")
    is_hf = any(n.endswith(".safetensors") or n in hf_markers for n in names)
    summary = ForeignSummary("huggingface" if is_hf else "unknown", files=files)
    shards = sorted(n for n in names if n.endswith(".safetensors"))
    for name in shards:
        try:
            summary.tensors += _safetensors_tensors(
                os.path.join(directory, name), "" if len(shards) == 1 else f"{name}:"
            )
        except (ValueError, OSError) as exc:
            summary.notes.append(f"{name}: not a readable safetensors file ({exc})")
    summary.opaque += [
        f"{n}: pickle / torch.save file (not loaded: unpickling could execute code)"
        for n in sorted(names)
        if n.endswith(PICKLE_SUFFIXES)
    ]
    _hf_notes(directory, names, summary)
    return summary


def dcp_subdirectories(directory: str) -> list[str]:
    """Names of the direct subdirectories that look like DCP directories (hold `.metadata`)."""
    out: list[str] = []
    for name in sorted(os.listdir(directory)):
        sub = os.path.join(directory, name)
        if (
            os.path.isdir(sub)
            and not os.path.islink(sub)
            and os.path.isfile(os.path.join(sub, ".metadata"))
        ):
            out.append(name)
    return out


def optional_json(path: str) -> Any | None:
    """The JSON value of a small side file such as `config.json`, or None if it is absent or malformed."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        value, problems = parse_document(f.read(1024 * 1024 + 1), path)
    return None if problems else value
