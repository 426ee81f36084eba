"""Constrained value types shared by the spec models."""

from __future__ import annotations

import posixpath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints

JSONValue = JsonValue
"""Any JSON value (finite numbers only, enforced where documents are parsed)."""

NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]
Rank = Annotated[int, Field(ge=0, description="A global rank of the process group.")]
Sha256Hex = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="A SHA-256 digest as 64 lower-case hex digits."),
]
Identifier = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"),
    Field(description="A name of 1-64 characters: letters, digits, `_`, `.`, `-`; not starting with a digit."),
]
RunId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"),
    Field(description="The run's identifier; also the name of the run directory."),
]
Timestamp = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$"),
    Field(description="An RFC 3339 UTC timestamp, e.g. `2026-01-31T12:00:00.123Z`."),
]
SpecVersion = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]+\.[0-9]+$"),
    Field(description="`MAJOR.MINOR` version of the spec the document follows."),
]


def _check_relative_path(value: str) -> str:
    if not value or value.startswith("/") or "\\" in value or "\x00" in value:
        raise ValueError("must be a non-empty relative POSIX path without backslashes or NUL")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("must be normalised: no empty, '.' or '..' segments")
    if posixpath.normpath(value) != value:
        raise ValueError("must be normalised")
    return value


RelativePath = Annotated[
    str,
    StringConstraints(min_length=1, max_length=1024),
    AfterValidator(_check_relative_path),
    Field(
        description="A relative, normalised POSIX path that stays inside the checkpoint directory.",
        json_schema_extra={"pattern": r"^(?!/)(?!.*\\)(?!(.*/)?\.\.?(/|$))(?!.*//)[^\x00]+(?<!/)$"},
    ),
]


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
