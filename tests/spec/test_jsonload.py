"""Malformed documents are findings, never crashes (MANIFEST-2)."""

from __future__ import annotations

import pytest

from ckptspec.jsonload import MAX_DEPTH, MAX_DOCUMENT_BYTES, nesting_depth, parse_document


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
        (
            b'{"a": ' + b"9" * 5000 + b"}",
            ["JSON_NONFINITE"],
        ),  # past Python's 4300-digit limit: the same finding
        (b'{"a": ' + b"9" * 309 + b"}", ["JSON_NONFINITE"]),  # > 2**1024: no double holds it
        (b'{"a": -' + b"9" * 309 + b"}", ["JSON_NONFINITE"]),
        (b'{"a": ' + b"9" * 308 + b"}", []),  # < 1.8e308: fits
        (b'{"a": ' + str(2**1024).encode() + b"}", ["JSON_NONFINITE"]),
        (
            b'{"a": ' + str(2**1024 - 2**970 - 1).encode() + b"}",
            [],
        ),  # the largest integer that rounds to a finite double
        (b'{"a": 1, "a": 2}', ["JSON_DUPLICATE_KEY"]),
        (b'{"a": {"b": 1, "b": 1}}', ["JSON_DUPLICATE_KEY"]),
        (b'"\\ud800"', ["JSON_ENCODING"]),  # a lone surrogate is no character
        (b'{"\\udc00": 1}', ["JSON_ENCODING"]),  # in a key, too
        (b'["\\ud83d\\ude00"]', []),  # a surrogate pair is one character
        (b'["\\\\ud800"]', []),  # an escaped backslash, then the letters ud800
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
    assert (
        value == {"lr": 2.0, "n": 2}
        and isinstance(value["lr"], float)
        and isinstance(value["n"], int)
    )


def test_escaped_quotes_cost_linear_memory() -> None:
    """Regression: 50 MB of escaped quotes cost 3 GB in the string-skipping regex of nesting_depth."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    data = b'"' + b'\\"' * 25_000_000 + b'"'
    assert codes(data) == []
    assert nesting_depth(b'["\\\\", [[]], "\\"["]') == 3
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 600 * 1024, f"{grown_kib} KiB for a 50 MB document"
