"""The canonical digests of the spec (section *digest*, requirement DIGEST-1).

Tensor digest, byte for byte::

    sha256( b"ckptspec-tensor-v1\\n"
            + dtype name (e.g. b"float32", b"bfloat16", b"int64", b"bool") + b"\\n"
            + shape as comma-separated decimal sizes (b"" for a scalar) + b"\\n"
            + the elements in row-major (C) order, each in little-endian byte order )

JSON digest: ``sha256(b"ckptspec-json-v2\\n" + JCS)``, where JCS is the JSON Canonicalization
Scheme of RFC 8785 (through the ``rfc8785`` package): every number written as the IEEE 754
double it denotes, in ECMAScript's shortest form, keys sorted by UTF-16 code units. Manifests of
spec 2.0 and 1.x carry the legacy form, ``sha256(b"ckptspec-json-v1\\n" + Python json)``
(:func:`json_digest_v1`), which readers keep checking for them.

State digest of a nested mapping: leaves are addressed by the ``/``-joined path of their keys
(list items by position); each leaf gets its tensor digest (tensors) or JSON digest (anything
else); the state digest is ``sha256`` over the lines ``path + "\\t" + leaf digest + "\\n"`` in
sorted path order.

This module imports torch only when a tensor is digested.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785

TENSOR_HEADER = b"ckptspec-tensor-v1\n"
JSON_HEADER = b"ckptspec-json-v2\n"
JSON_HEADER_V1 = b"ckptspec-json-v1\n"
_SAFE_INTEGER = 2**53 - 1


def _as_doubles(value: Any) -> Any:
    """``value`` with every integer beyond +-(2^53 - 1) replaced by the double it denotes, as a JSON
    number is in RFC 8785 (the ``rfc8785`` package refuses such integers instead of rounding them)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            return value
        try:
            return float(value)
        except OverflowError:
            raise ValueError(
                f"an integer of {len(str(abs(value)))} digits is not a finite double"
            ) from None
    if isinstance(value, Mapping):
        return {key: _as_doubles(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_doubles(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) encoding of ``value``; raises ``ValueError`` on NaN, infinity, a
    non-string key or a string that is not Unicode text (a lone surrogate)."""
    try:
        return bytes(rfc8785.dumps(_as_doubles(value)))
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
        raise ValueError(str(exc)) from None


def json_digest(value: Any) -> str:
    """The JSON digest of ``value`` as 64 hex digits: ``sha256("ckptspec-json-v2\\n" + JCS)``."""
    return hashlib.sha256(JSON_HEADER + canonical_json(value)).hexdigest()


def canonical_json_v1(value: Any) -> bytes:
    """The legacy canonical form of spec 2.0 and 1.x: Python's ``json`` with sorted keys and no
    whitespace; raises ``ValueError`` on NaN or infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def json_digest_v1(value: Any) -> str:
    """The legacy JSON digest of spec 2.0 and 1.x fingerprints: ``sha256("ckptspec-json-v1\\n" + canonical_json_v1)``."""
    return hashlib.sha256(JSON_HEADER_V1 + canonical_json_v1(value)).hexdigest()


def raw_tensor_digest(dtype: str, shape: Sequence[int], data: bytes | memoryview) -> str:
    """The tensor digest from its parts: ``data`` holds the row-major little-endian elements."""
    h = hashlib.sha256(TENSOR_HEADER)
    h.update(
        dtype.encode("ascii") + b"\n" + ",".join(str(int(s)) for s in shape).encode("ascii") + b"\n"
    )
    h.update(data)
    return h.hexdigest()


def tensor_digest(tensor: Any) -> str:
    """The tensor digest of a ``torch.Tensor`` (a DTensor must be made full by the caller)."""
    if sys.byteorder != "little":  # torch stores elements in native order
        raise RuntimeError(
            "the canonical tensor digest is implemented for little-endian hosts only"
        )
    t = tensor.detach()
    if getattr(t, "is_sparse", False):
        t = t.to_dense()
    # Lazy conjugate/negative views keep their elements un-negated in memory: materialise them.
    t = t.to("cpu").resolve_conj().resolve_neg().contiguous()
    dtype = str(t.dtype).removeprefix("torch.")
    nbytes = t.numel() * t.element_size()
    # A zero-copy, read-only view of the elements: `t` (a local reference, so its storage cannot
    # be freed) stays alive and contiguous until the hash returns; nothing keeps the view.
    data = memoryview((ctypes.c_char * nbytes).from_address(t.data_ptr())) if nbytes else b""
    return raw_tensor_digest(dtype, tuple(t.shape), data)


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def leaves(state: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a nested mapping/sequence (a tensor or a JSON value that is neither), keyed
    by its ``/``-joined path: the paths the canonical digest is defined over."""
    out: dict[str, Any] = {}
    if isinstance(state, Mapping):
        for key, value in state.items():
            out.update(leaves(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(state, (list, tuple)):
        for index, value in enumerate(state):
            out.update(leaves(value, f"{prefix}/{index}" if prefix else str(index)))
    else:
        out[prefix] = state
    return out


def leaf_digests(state: Any, prefix: str = "") -> dict[str, str]:
    """The digest of every leaf of a nested mapping/sequence, keyed by its ``/``-joined path."""
    return {
        path: tensor_digest(leaf) if _is_tensor(leaf) else json_digest(leaf)
        for path, leaf in leaves(state, prefix).items()
    }


def state_digest(state: Any) -> str:
    """The state digest of a nested mapping of tensors and JSON values."""
    h = hashlib.sha256()
    for path, digest in sorted(leaf_digests(state).items()):
        h.update(f"{path}\t{digest}\n".encode())
    return h.hexdigest()
