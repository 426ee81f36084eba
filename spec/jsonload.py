"""Parsing `manifest.json` and `run.json` bytes within the limits of MANIFEST-2.

Every way a document can be malformed (too large, not UTF-8, not JSON, too deep, NaN or
infinite numbers, numbers too large for a double, lone surrogate escapes, repeated keys)
becomes a finding; nothing here raises on bad input. Time and memory are linear in the size of
the document: strings are skipped without backtracking, and no integer is converted to or from
text beyond :data:`MAX_NUMBER_DIGITS` digits.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from typing import Any

from ckptspec.confined import open_regular
from ckptspec.findings import Finding, finding

MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
"""Largest manifest or run index a reader accepts (MANIFEST-2)."""

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a reader accepts (MANIFEST-2)."""


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not a finite number")


MAX_NUMBER_DIGITS = 309
"""Most digits of a JSON integer: every number in a document must fit in a double (MANIFEST-2),
and the largest double, about 1.8e308, has 309 digits."""


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NonFinite(f"{_shorten(text)} does not fit in a double")
    return value


def _double_sized_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_NUMBER_DIGITS:
        raise _NonFinite(f"an integer of {digits} digits does not fit in a double")
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise _NonFinite(f"{_shorten(text)} does not fit in a double") from None
    return value


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


_ESCAPED_PAIRS = (
    b"\\\\",
    b'\\"',
)  # an escaped backslash, then an escaped quote (left to right, as JSON pairs them)
_STRING = re.compile(rb'"[^"]*"')
_NESTING = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in the JSON text ``data``, found without parsing
    (and so without recursion or backtracking): escapes and strings are removed, brackets counted +1 / -1."""
    for pair in _ESCAPED_PAIRS:
        data = data.replace(pair, b"")
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS).translate(_NESTING)
    return max(itertools.accumulate(memoryview(brackets).cast("b")), default=0)


def parse_document(data: bytes, path: str) -> tuple[Any | None, list[Finding]]:
    """The JSON value in ``data``, or None with the findings that explain why it is unusable.

    ``path`` names the document in findings. A value is returned only when there are no findings.
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        return None, [
            finding(
                "JSON_TOO_LARGE",
                path,
                f"{len(data)} bytes, more than the {MAX_DOCUMENT_BYTES}-byte limit",
            )
        ]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [
            finding("JSON_ENCODING", path, f"not UTF-8: invalid byte at offset {exc.start}")
        ]
    depth = nesting_depth(data)
    if depth > MAX_DEPTH:
        return None, [finding("JSON_TOO_DEEP", path, f"nesting depth {depth} exceeds {MAX_DEPTH}")]
    duplicates: list[str] = []

    def build_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    duplicates.append(key)
                seen.add(key)
        return obj

    try:
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_double_sized_int,
            object_pairs_hook=build_object,
        )
        json.dumps(value, ensure_ascii=False, check_circular=False).encode(
            "utf-8"
        )  # a lone surrogate cannot be encoded
    except UnicodeEncodeError as exc:
        return None, [
            finding(
                "JSON_ENCODING",
                path,
                f"a string escape encodes the lone surrogate U+{ord(exc.object[exc.start]):04X}, which is not a Unicode character",
            )
        ]
    except _NonFinite as exc:
        return None, [finding("JSON_NONFINITE", path, str(exc))]
    except RecursionError:  # not expected after the depth check; a crash is never acceptable
        return None, [
            finding("JSON_TOO_DEEP", path, "nesting is deeper than the parser can follow")
        ]
    except ValueError as exc:  # JSONDecodeError, or an integer literal with too many digits
        return None, [finding("JSON_SYNTAX", path, f"not valid JSON: {exc}")]
    if duplicates:
        names = ", ".join(sorted({repr(k) for k in duplicates}))
        return None, [finding("JSON_DUPLICATE_KEY", path, f"repeated key(s) {names}")]
    return value, []


def read_document(path: str, *, follow_links: bool = False) -> tuple[Any | None, list[Finding]]:
    """Read and parse the document at ``path`` (a regular file), reading at most one byte past the limit.

    A symbolic link is followed only with ``follow_links`` (for a path the caller has already
    confined); findings always name ``path``. Opening never blocks. Raises ``OSError`` when the
    file cannot be opened or read, or is not a regular file.
    """
    with os.fdopen(open_regular(os.path.realpath(path) if follow_links else path), "rb") as f:
        data = f.read(MAX_DOCUMENT_BYTES + 1)
    return parse_document(data, path)
