"""Malformed documents are findings, never crashes (MANIFEST-2)."""

from __future__ import annotations

import pytest

from ckptspec.jsonload import MAX_DEPTH, MAX_DOCUMENT_BYTES, parse_document


def codes(data: bytes) -> list[str]:
    value, findings = parse_document(data, "doc.json")
    assert (value is None) == bool(findings)
    return [f.code for f in findings]


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[]" + b"}" * (depth - 1)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b'{"a": 1}', []),
        (nested(MAX_DEPTH), []),
        (nested(MAX_DEPTH + 1), ["JSON_TOO_DEEP"]),
        (b"[" * 1_000_000 + b"]" * 1_000_000, ["JSON_TOO_DEEP"]),
        (b'{"a": NaN}', ["JSON_NONFINITE"]),
        (b'{"a": Infinity}', ["JSON_NONFINITE"]),
        (b'{"a": -Infinity}', ["JSON_NONFINITE"]),
        (b'{"a": 1e400}', ["JSON_NONFINITE"]),
        (b'{"a": -1e400}', ["JSON_NONFINITE"]),
        (b'{"a": 1e-400}', []),
        (b'{"a": "\xff"}', ["JSON_ENCODING"]),
        (b"\xef\xbb\xbf{}", ["JSON_SYNTAX"]),
        (b'{"a": 1', ["JSON_SYNTAX"]),
        (b"", ["JSON_SYNTAX"]),
        (b'{"a": ' + b"9" * 5000 + b"}", ["JSON_SYNTAX"]),
        (b'{"a": 1, "a": 2}', ["JSON_DUPLICATE_KEY"]),
        (b'{"a": {"b": 1, "b": 1}}', ["JSON_DUPLICATE_KEY"]),
        (b'"\\ud800"', []),
    ],
    ids=lambda v: v[:24] if isinstance(v, bytes) else str(v),
)
def test_document_limits(data: bytes, expected: list[str]) -> None:
    assert codes(data) == expected


def test_size_cap() -> None:
    assert codes(b" " * (MAX_DOCUMENT_BYTES - 2) + b"{}") == []
    assert codes(b" " * (MAX_DOCUMENT_BYTES - 1) + b"{}") == ["JSON_TOO_LARGE"]


def test_floats_are_kept_as_floats() -> None:
    value, _ = parse_document(b'{"lr": 2.0, "n": 2}', "doc.json")
    assert value == {"lr": 2.0, "n": 2} and isinstance(value["lr"], float) and isinstance(value["n"], int)
