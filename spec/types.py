"""Constrained value types shared by the spec models."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, StringConstraints

from ckptspec.file_digest import DIGEST_PATTERN
from ckptspec.layout import LAYOUT

JSONValue = JsonValue
"""Any JSON value (finite numbers only, enforced where documents are parsed)."""


def _integral_float_to_int(value: Any) -> Any:
    # JSON Schema counts 5.0 as an integer; strict pydantic would not. Converting integral
    # floats here makes both validators give the same verdict on every document.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


NonNegativeInt = Annotated[int, Field(ge=0), BeforeValidator(_integral_float_to_int)]
"""An integer >= 0; an integral JSON number such as ``5.0`` is accepted as ``5``."""
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_integral_float_to_int)]
"""An integer >= 1; an integral JSON number such as ``5.0`` is accepted as ``5``."""
Rank = Annotated[
    int,
    Field(ge=0, description="A global rank of the process group."),
    BeforeValidator(_integral_float_to_int),
]
Sha256Hex = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="A SHA-256 digest as 64 lower-case hex digits."),
]
FileDigest = Annotated[
    str,
    StringConstraints(pattern=DIGEST_PATTERN),
    Field(
        description="`<algorithm>:<hex>`: one of the algorithms of the digest section (`xxh3-128`, `sha256`, `blake3`, `crc32c`) and the file's digest in lower-case hex of that algorithm's length."
    ),
]
Identifier = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"),
    Field(
        description="A name of 1-64 characters: letters, digits, `_`, `.`, `-`; not starting with a digit."
    ),
]
RunId = Annotated[
    str,
    StringConstraints(pattern=LAYOUT.run_id_pattern),
    Field(description="The run's identifier; also the name of the run directory."),
]
Timestamp = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$"
    ),
    Field(description="An RFC 3339 UTC timestamp, e.g. `2026-01-31T12:00:00.123Z`."),
]
SpecVersion = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]+\.[0-9]+$"),
    Field(description="`MAJOR.MINOR` version of the spec the document follows."),
]


# One path segment: anything but `/`, `\\` and NUL, and not `.` or `..`. Written without
# lookaround so that every regex dialect (ECMA-262, Python, RE2) reads it the same way.
_SEGMENT = r"(?:[^/\\\x00.][^/\\\x00]*|\.[^/\\\x00.][^/\\\x00]*|\.\.[^/\\\x00]+)"
_RELATIVE_PATH_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"


RelativePath = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024, pattern=_RELATIVE_PATH_PATTERN),
    Field(
        description="A relative, normalised POSIX path that stays inside the checkpoint directory."
    ),
]
"""`/`-separated segments, none empty, `.` or `..`, without `\\` or NUL: relative and normalised."""


class StrictModel(BaseModel):
    """Base of every spec model: unknown fields are rejected, and values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


Extensions = Annotated[
    dict[str, Any],
    Field(
        default_factory=dict,
        description="Producer-specific data. Keys SHOULD be reverse-DNS or vendor-prefixed; "
        "readers MUST ignore keys they do not know.",
    ),
]
