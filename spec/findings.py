"""Validator findings and the registry of their codes.

A finding is one violation the validator found: a stable ``code``, the requirement it breaks,
a severity, the file it concerns and a message a person can act on. Codes are public API, like
requirement IDs: a code may be reworded or deprecated, never renamed or given another meaning.
``docs/spec/codes.md`` is generated from :data:`CODES`.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ckptspec import requirements


class Severity(str, Enum):
    """How a finding counts: errors make a target non-conformant; warnings only under ``--strict``."""

    ERROR = "error"
    WARNING = "warning"


Stage = Literal["document", "structure", "rule", "files", "run"]
"""Which check produces a code: reading the document (JSON within limits, a major version this
package implements), schema structure, cross-field rules over one parsed document, the files of
a checkpoint directory, or the consistency of a run directory."""


class Code(BaseModel):
    """One registered finding code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="The stable code.")
    requirement: str = Field(
        description="ID of the requirement the finding reports a violation of."
    )
    severity: Severity = Field(description="Default severity.")
    stage: Stage = Field(description="Which check produces it.")
    meaning: str = Field(description="One line saying what the finding means.")


def _c(code: str, requirement: str, severity: str, stage: Stage, meaning: str) -> Code:
    requirements.get(requirement)  # fail at import on a typo'd requirement ID
    return Code(
        code=code,
        requirement=requirement,
        severity=Severity(severity),
        stage=stage,
        meaning=meaning,
    )


CODES_LIST: tuple[Code, ...] = (
    # --- document: the bytes and major version of manifest.json / run.json ---------------
    _c(
        "JSON_TOO_LARGE",
        "MANIFEST-2",
        "error",
        "document",
        "The document is larger than 64 MiB; it was not parsed.",
    ),
    _c(
        "JSON_ENCODING",
        "MANIFEST-2",
        "error",
        "document",
        "The document is not valid UTF-8, or a string escape encodes a lone surrogate (e.g. `\\ud800`).",
    ),
    _c("JSON_SYNTAX", "MANIFEST-2", "error", "document", "The document is not well-formed JSON."),
    _c(
        "JSON_TOO_DEEP",
        "MANIFEST-2",
        "error",
        "document",
        "Arrays and objects nest deeper than 64 levels.",
    ),
    _c(
        "JSON_NONFINITE",
        "MANIFEST-2",
        "error",
        "document",
        "The document contains NaN, Infinity or a number (integer or not) too large for a double.",
    ),
    _c(
        "JSON_DUPLICATE_KEY",
        "MANIFEST-2",
        "error",
        "document",
        "An object repeats a key, so readers may disagree on its value.",
    ),
    _c(
        "VERSION_UNSUPPORTED",
        "VERSION-1",
        "error",
        "document",
        "The document's major `spec_version` is not one this validator implements.",
    ),
    # --- structure: the schema ------------------------------------------------------------
    _c(
        "MANIFEST_SCHEMA",
        "MANIFEST-1",
        "error",
        "structure",
        "The manifest does not match the manifest schema.",
    ),
    _c(
        "RUN_INDEX_SCHEMA",
        "RUN-1",
        "error",
        "structure",
        "`run.json` does not match the run-index schema.",
    ),
    _c(
        "PATH_INVALID",
        "LAYOUT-6",
        "error",
        "structure",
        "A path is absolute, not normalised, or contains `\\` or NUL.",
    ),
    _c(
        "FORMAT_UNSAFE",
        "MANIFEST-7",
        "error",
        "structure",
        "A component uses a payload format not loadable without executing code.",
    ),
    _c(
        "DIGEST_INVALID",
        "DIGEST-2",
        "error",
        "structure",
        "A file digest names no listed algorithm, or its value is not lower-case hex of that algorithm's length.",
    ),
    _c(
        "VERSION_UNKNOWN_FIELD",
        "VERSION-1",
        "warning",
        "structure",
        "A field unknown to this validator, in a document of a newer minor version; it was not checked.",
    ),
    # --- rule: cross-field rules over a parsed manifest ----------------------------------
    _c(
        "STEP_MISMATCH",
        "MANIFEST-3",
        "error",
        "rule",
        "The manifest's `step` differs from `progress.global_step`.",
    ),
    _c(
        "ACCUMULATION_MISMATCH",
        "MANIFEST-3",
        "error",
        "rule",
        "`progress.accumulation_steps` differs from the fingerprinted `accumulation_steps`.",
    ),
    _c(
        "PER_RANK_COVERAGE",
        "MANIFEST-4",
        "error",
        "rule",
        "A `per_rank` component lacks files for some rank, or a file is shared by several ranks.",
    ),
    _c(
        "GROUP_COVERAGE",
        "MANIFEST-4",
        "error",
        "rule",
        "A `per_group`/`per_node` component has no valid `group_size` or lacks files for some group.",
    ),
    _c(
        "SHARDED_FORMAT",
        "MANIFEST-5",
        "error",
        "rule",
        "A `sharded` component uses a format that cannot be resharded.",
    ),
    _c(
        "RESHARDABLE_FLAG",
        "MANIFEST-5",
        "error",
        "rule",
        "A component's `reshardable` flag contradicts its sharing pattern.",
    ),
    _c(
        "RESUMABLE_INCOMPLETE",
        "MANIFEST-6",
        "error",
        "rule",
        "A checkpoint marked resumable lacks a model, optimizer, rng or data_position component.",
    ),
    _c(
        "MESH_WORLD_SIZE",
        "MANIFEST-8",
        "error",
        "rule",
        "The device-mesh sizes do not multiply to `topology.world_size`.",
    ),
    _c("RANK_OUT_OF_RANGE", "MANIFEST-8", "error", "rule", "A rank is not in `[0, world_size)`."),
    _c(
        "FINGERPRINT_KEYS",
        "MANIFEST-9",
        "error",
        "rule",
        "The config fingerprint lacks a required setting.",
    ),
    _c(
        "FINGERPRINT_DIGEST",
        "MANIFEST-9",
        "error",
        "rule",
        "The config fingerprint's `sha256` is not the JSON digest of its values.",
    ),
    _c("DUPLICATE_COMPONENT", "MANIFEST-10", "error", "rule", "Two components have the same name."),
    _c("DUPLICATE_FILE", "MANIFEST-10", "error", "rule", "A file path is listed more than once."),
    _c(
        "REPLICATION_MISMATCH",
        "MANIFEST-11",
        "error",
        "rule",
        "A replication check recorded different digests on different ranks.",
    ),
    _c(
        "REPLICATION_INVALID",
        "MANIFEST-11",
        "error",
        "rule",
        "A replication check names an unknown component or lists a rank twice.",
    ),
    _c(
        "STEP_COUNT_MISMATCH",
        "MANIFEST-12",
        "error",
        "rule",
        "A component's `step_count` differs from `progress.global_step`.",
    ),
    _c(
        "RESUME_RECORD",
        "MANIFEST-13",
        "error",
        "rule",
        "`resumed_from` is inconsistent: elastic flag, re-derived components or world size disagree.",
    ),
    # --- rule: cross-field rules over a parsed run index ---------------------------------
    _c(
        "BEST_RECORD_INCOMPLETE",
        "RUN-3",
        "error",
        "rule",
        "The best record has a `step` without a `score`, or a `score` without a `step`.",
    ),
    _c(
        "REWIND_RECORD",
        "RUN-6",
        "error",
        "rule",
        "A rewind record is inconsistent or its `moved_to` directory is missing.",
    ),
    # --- files: one checkpoint directory -------------------------------------------------
    _c(
        "CHECKPOINT_NO_MANIFEST",
        "LAYOUT-3",
        "error",
        "files",
        "The directory has no `manifest.json` file (none, a directory, or a link to no regular file), so it is not a checkpoint.",
    ),
    _c(
        "DIR_STEP_MISMATCH",
        "LAYOUT-2",
        "error",
        "files",
        "The checkpoint directory's name encodes another step than its manifest.",
    ),
    _c(
        "CHECKPOINT_RUN_ID",
        "LAYOUT-1",
        "error",
        "files",
        "The manifest's `run_id` differs from the run it is stored in.",
    ),
    _c(
        "FILE_MISSING",
        "LAYOUT-5",
        "error",
        "files",
        "A listed file does not exist, or is a symbolic link inside the directory that leads to nothing.",
    ),
    _c(
        "FILE_NOT_REGULAR",
        "LAYOUT-5",
        "error",
        "files",
        "A listed path is a directory, device, socket or FIFO, not a regular file.",
    ),
    _c(
        "FILE_SIZE_MISMATCH",
        "LAYOUT-5",
        "error",
        "files",
        "A listed file's size differs from the manifest.",
    ),
    _c(
        "FILE_DIGEST_MISMATCH",
        "LAYOUT-5",
        "error",
        "files",
        "A listed file's digest differs from the manifest (checked with `--deep`, and by loaders as they read).",
    ),
    _c(
        "PATH_ESCAPES",
        "LAYOUT-6",
        "error",
        "files",
        "A listed path goes through a symbolic link that leaves the checkpoint directory; it was not followed.",
    ),
    _c(
        "UNLISTED_FILE",
        "LAYOUT-7",
        "warning",
        "files",
        "A regular file (or a symbolic link) in the checkpoint directory is not listed in the manifest.",
    ),
    # --- run: a run directory ------------------------------------------------------------
    _c(
        "RUN_INDEX_MISSING",
        "RUN-1",
        "error",
        "run",
        "A run directory has no `run.json` that is a regular file.",
    ),
    _c(
        "RUN_INDEX_RUN_ID",
        "RUN-1",
        "error",
        "run",
        "`run.json`'s `run_id` differs from the run directory's name.",
    ),
    _c(
        "UNCOMMITTED_STEP_DIR",
        "LAYOUT-3",
        "warning",
        "run",
        "A `step-*` directory has no manifest; readers ignore it (e.g. left by an interrupted deletion).",
    ),
    _c(
        "LATEST_MISMATCH",
        "RUN-2",
        "error",
        "run",
        "`latest_step` is not the highest committed step.",
    ),
    _c(
        "LATEST_LINK",
        "RUN-2",
        "error",
        "run",
        "The `latest` symbolic link does not point at the latest checkpoint.",
    ),
    _c(
        "BEST_NOT_COMMITTED",
        "RUN-3",
        "error",
        "run",
        "The best record's step is not a committed checkpoint.",
    ),
    _c(
        "BEST_SCORE_MISMATCH",
        "RUN-3",
        "error",
        "run",
        "The best checkpoint's eval metrics lack the metric or disagree with the recorded score.",
    ),
    _c(
        "BEST_LINK",
        "RUN-3",
        "error",
        "run",
        "The `best` symbolic link does not point at the best checkpoint.",
    ),
    _c(
        "RETENTION_EXCEEDED",
        "RUN-7",
        "warning",
        "run",
        "The run holds more committed checkpoints than its retention policy keeps.",
    ),
    _c(
        "CONCURRENT_WRITERS",
        "RUN-8",
        "error",
        "run",
        "A step a rewind moved aside is still committed by a save older than the rewind: two writers shared the run.",
    ),
)

CODES: dict[str, Code] = {c.code: c for c in CODES_LIST}
"""Every finding code by name."""


class CannotCheck(Exception):
    """The path cannot be validated at all: it cannot be read, it is not a checkpoint, a run
    directory, a manifest or a run index, or it needs a newer validator (a value of a newer minor
    version). The message names the path and, where one is found, what the user probably meant.
    The command line reports it with exit status 2, never as a finding."""


class Finding(BaseModel):
    """One violation found by the validator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(description="Stable finding code, a key of the code registry.")
    requirement: str = Field(description="ID of the requirement violated.")
    severity: Severity
    path: str = Field(description="The file or directory the finding concerns.")
    pointer: str | None = Field(
        default=None,
        description="JSON Pointer into the document at `path`, where the finding concerns one value.",
    )
    message: str = Field(description="What is wrong, in words a person can act on.")

    def line(self) -> str:
        """The one-line text form: ``CODE REQ-ID path[#pointer]: severity: message``.

        Control characters in the path, pointer and message are escaped (see :func:`printable`),
        so a file name can neither start a line that looks like another finding nor send
        escape sequences to a terminal.
        """
        where = f"{self.path}#{self.pointer}" if self.pointer is not None else self.path
        return printable(
            f"{self.code} {self.requirement} {where}: {self.severity.value}: {self.message}"
        )


_UNPRINTABLE = {
    c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    for c in (
        *range(0x20),
        *range(0x7F, 0xA0),
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
}


def printable(text: str) -> str:
    """``text`` with C0/C1 control characters, line separators and bidirectional overrides written
    as ``\\xNN`` / ``\\uNNNN`` escapes: safe to print on one line of a terminal or a log."""
    return text.translate(_UNPRINTABLE)


def finding(code: str, path: str, message: str, pointer: str | None = None) -> Finding:
    """A finding of a registered ``code``, with its requirement and default severity."""
    spec = CODES[code]
    return Finding(
        code=code,
        requirement=spec.requirement,
        severity=spec.severity,
        path=path,
        pointer=pointer,
        message=message,
    )


def json_pointer(*parts: object) -> str:
    """The JSON Pointer (RFC 6901) of a location given by its keys and indexes."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def strict(findings: Iterable[Finding]) -> list[Finding]:
    """The findings with every warning promoted to an error (``--strict``)."""
    return [
        f if f.severity is Severity.ERROR else f.model_copy(update={"severity": Severity.ERROR})
        for f in findings
    ]


def is_conformant(findings: Iterable[Finding]) -> bool:
    """Whether none of the findings is an error."""
    return all(f.severity is not Severity.ERROR for f in findings)
