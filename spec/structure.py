"""Checking a parsed JSON value against the structure of a spec model (schema stage).

The pydantic models carry no cross-field validators, so the verdict here is the verdict of the
generated JSON Schema. Versioning follows VERSION-1: an unknown major version is refused; in a
document of a newer minor version, fields this package does not know are reported as warnings
and ignored, and the rest is checked. A manifest of major version 1 is read as the version 2
document it describes (its files' ``sha256`` becomes ``digest`` ``sha256:<hex>``); findings name
the version 1 field.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ckptspec.file_digest import ALGORITHMS
from ckptspec.findings import CannotCheck, Finding, finding, json_pointer
from ckptspec.manifest import READABLE_VERSIONS, Manifest
from ckptspec.run_index import RunIndex

M = TypeVar("M", bound=BaseModel)

_VERSION_RE = re.compile(r"^([0-9]+)\.([0-9]+)$")


@dataclass(frozen=True)
class SchemaErrorCode:
    """A schema error about the value of the member at ``location`` (a JSON Pointer in which
    ``*`` stands for any array index) of a ``document`` is reported as ``code`` instead of the
    document's schema code. A missing member and an unknown member keep the schema code."""

    document: str
    location: str
    code: str


SCHEMA_ERROR_CODES: tuple[SchemaErrorCode, ...] = (
    SchemaErrorCode("manifest", "/components/*/files/*/path", "PATH_INVALID"),
    SchemaErrorCode("manifest", "/components/*/files/*/digest", "DIGEST_INVALID"),
    SchemaErrorCode("manifest", "/components/*/files/*/sha256", "DIGEST_INVALID"),
    SchemaErrorCode("manifest", "/components/*/format", "FORMAT_UNSAFE"),
    SchemaErrorCode("run-index", "/rewinds/*/moved_to", "PATH_INVALID"),
)
"""Which schema errors get a code of their own (the rest are ``MANIFEST_SCHEMA`` /
``RUN_INDEX_SCHEMA``); ``docs/spec/validating.md`` renders this table."""


def _matches(location: str, loc: tuple[Any, ...]) -> bool:
    parts = location.split("/")[1:]
    return len(parts) == len(loc) and all(
        (p == "*" and isinstance(k, int)) or p == str(k) for p, k in zip(parts, loc)
    )


def _code_for(schema_code: str, error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    if error["type"] in ("missing", "extra_forbidden"):
        return schema_code
    document = "manifest" if schema_code == "MANIFEST_SCHEMA" else "run-index"
    return next(
        (
            r.code
            for r in SCHEMA_ERROR_CODES
            if r.document == document and _matches(r.location, loc)
        ),
        schema_code,
    )


_WELL_FORMED_DIGEST = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}:[0-9a-f]{8,128}$")


def _value_of_a_newer_minor(error: dict[str, Any]) -> bool:
    """Whether a schema error may be a value a newer minor version added: a value outside an
    enumeration, or a well-formed file digest naming an algorithm this package does not implement."""
    if error["type"] in ("literal_error", "enum"):
        return True
    value, loc = error.get("input"), tuple(error["loc"])
    return (
        _code_for("MANIFEST_SCHEMA", error) == "DIGEST_INVALID"
        and isinstance(value, str)
        and _WELL_FORMED_DIGEST.match(value) is not None
        and value.split(":", 1)[0] not in ALGORITHMS
        and len(loc) == 5
    )


def _describe(error: Any) -> str:
    message = str(error["msg"])
    value = error.get("input")
    if error["type"] != "missing" and (value is None or isinstance(value, (str, int, float, bool))):
        shown = repr(value)
        message += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
    return message


def _version(value: Any, path: str) -> tuple[int | None, bool, list[Finding]]:
    """The major version ``value`` declares (None if it declares none the schema accepts) and
    whether its minor version is newer than this package knows; a finding if the major is one
    this package does not read."""
    version = value.get("spec_version") if isinstance(value, dict) else None
    match = _VERSION_RE.match(version) if isinstance(version, str) else None
    if match is None:
        return None, False, []  # the schema reports a missing or malformed version
    major, minor = (_version_number(match.group(i)) for i in (1, 2))
    if major not in READABLE_VERSIONS:
        shown = version if len(version) <= 40 else f"{version[:20]}... ({len(version)} characters)"
        known = ", ".join(f"{m}.x" for m in READABLE_VERSIONS)
        return (
            None,
            False,
            [
                finding(
                    "VERSION_UNSUPPORTED",
                    path,
                    f"spec_version {shown} has major version {major if major is not None else 'beyond any'}; this validator reads {known}",
                    json_pointer("spec_version"),
                )
            ],
        )
    return major, minor is None or minor > READABLE_VERSIONS[major], []


def from_version_1(value: Any) -> tuple[Any, list[dict[str, Any]]]:
    """A version 1 manifest in version 2 form (each file entry's ``sha256`` as ``digest``
    ``sha256:<hex>``), and an ``extra_forbidden`` error for each file entry that carries the
    version 2 field ``digest``, which version 1 does not define (it is removed from the result).

    Anything else that is not a well-formed version 1 file entry is left for the schema to report.
    """
    components = value.get("components")
    if not isinstance(components, list):
        return value, []
    value, misplaced = copy.deepcopy(value), []
    for ci, component in enumerate(value["components"]):
        files = component.get("files") if isinstance(component, dict) else None
        for fi, entry in enumerate(files if isinstance(files, list) else ()):
            if not isinstance(entry, dict):
                continue
            if "digest" in entry:
                misplaced.append(
                    {
                        "type": "extra_forbidden",
                        "loc": ("components", ci, "files", fi, "digest"),
                        "msg": "Extra inputs are not permitted",
                        "input": entry.pop("digest"),
                    }
                )
            if "sha256" in entry:
                sha = entry.pop("sha256")
                entry["digest"] = f"sha256:{sha}" if isinstance(sha, str) else sha
    return value, misplaced


def _version_1_location(error: dict[str, Any]) -> dict[str, Any]:
    """A schema error of the version 2 form of a version 1 manifest, located in the version 1
    document (``digest`` was ``sha256`` there)."""
    loc = tuple(error["loc"])
    if len(loc) == 5 and loc[0] == "components" and loc[2] == "files" and loc[4] == "digest":
        return {**error, "loc": (*loc[:4], "sha256")}
    return error


def _version_number(digits: str) -> int | None:
    """The value of a version part, or None when it has more than 18 significant digits (then it
    is larger than any version this package knows, and is never converted: Python refuses to
    convert more than 4300 digits)."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 18 else None


def _drop(value: Any, loc: tuple[Any, ...]) -> None:
    for key in loc[:-1]:
        value = value[key]
    value.pop(loc[-1], None)


def check_structure(
    model: type[M], value: Any, path: str, schema_code: str
) -> tuple[M | None, list[Finding]]:
    """``value`` as a ``model`` instance, or None with the findings that say why it is not one."""
    major, newer, findings = _version(value, path)
    if findings:
        return None, findings
    misplaced: list[
        dict[str, Any]
    ] = []  # errors of the version 1 document itself (fields already removed)
    version_1_manifest = major == 1 and model is Manifest
    if version_1_manifest:
        value, misplaced = from_version_1(value)
    instance, errors = _validate(model, value, version_1_manifest)
    if not errors and not misplaced:
        return instance, []
    if newer:
        unknown = [e for e in misplaced + errors if e["type"] == "extra_forbidden"]
        if unknown:
            value = copy.deepcopy(value)
            known = (
                f"{major}.{READABLE_VERSIONS[major]}" if major is not None else "its major version"
            )
            for error in unknown:
                loc = tuple(error["loc"])
                findings.append(
                    finding(
                        "VERSION_UNKNOWN_FIELD",
                        path,
                        f"field {loc[-1]!r} is not defined in spec {known}; not checked",
                        json_pointer(*loc),
                    )
                )
                if error not in misplaced:
                    _drop(value, loc)
            misplaced = [e for e in misplaced if e["type"] != "extra_forbidden"]
            instance, errors = _validate(model, value, version_1_manifest)
            if not errors and not misplaced:
                return instance, findings
        beyond = [e for e in misplaced + errors if _value_of_a_newer_minor(e)]
        if beyond:
            loc = tuple(beyond[0]["loc"])
            raise CannotCheck(
                f"{path}: {json_pointer(*loc)} is {beyond[0].get('input')!r}, a value spec {major}.{READABLE_VERSIONS[major]} "
                f"does not define; the document declares spec {value.get('spec_version')} (a newer minor version): "
                f"a validator that implements it can check this document"
            )
    for error in misplaced + errors:
        loc = tuple(error["loc"])
        findings.append(
            finding(_code_for(schema_code, error), path, _describe(error), json_pointer(*loc))
        )
    return None, findings


def _validate(
    model: type[M], value: Any, version_1_manifest: bool
) -> tuple[M | None, list[dict[str, Any]]]:
    try:
        return model.model_validate(value), []
    except ValidationError as exc:
        errors = [dict(e) for e in exc.errors()]
    return None, [_version_1_location(e) for e in errors] if version_1_manifest else errors


def check_manifest(value: Any, path: str) -> tuple[Manifest | None, list[Finding]]:
    """Structure check of a parsed manifest (MANIFEST-1, VERSION-1)."""
    return check_structure(Manifest, value, path, "MANIFEST_SCHEMA")


def check_run_index(value: Any, path: str) -> tuple[RunIndex | None, list[Finding]]:
    """Structure check of a parsed run index (RUN-1, VERSION-1)."""
    return check_structure(RunIndex, value, path, "RUN_INDEX_SCHEMA")
