"""Checking a parsed JSON value against the structure of a spec model (schema stage).

The pydantic models carry no cross-field validators, so the verdict here is the verdict of the
generated JSON Schema. Versioning follows VERSION-1: an unknown major version is refused; in a
document of a newer minor version, fields this package does not know are reported as warnings
and ignored, and the rest is checked.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Optional, TypeVar

from pydantic import BaseModel, ValidationError

from ckptspec.findings import Finding, finding, json_pointer
from ckptspec.manifest import SPEC_VERSION, Manifest
from ckptspec.run_index import RunIndex

M = TypeVar("M", bound=BaseModel)

_MAJOR, _MINOR = (int(p) for p in SPEC_VERSION.split("."))
_VERSION_RE = re.compile(r"^([0-9]+)\.([0-9]+)$")


def _code_for(schema_code: str, loc: tuple[Any, ...]) -> str:
    is_file_path = len(loc) >= 3 and loc[-1] == "path" and loc[-3] == "files"
    if is_file_path or loc[-1:] == ("moved_to",):
        return "PATH_INVALID"
    if len(loc) == 3 and loc[0] == "components" and loc[2] == "format":
        return "FORMAT_UNSAFE"
    return schema_code


def _describe(error: Any) -> str:
    message = str(error["msg"])
    value = error.get("input")
    if error["type"] != "missing" and (value is None or isinstance(value, (str, int, float, bool))):
        shown = repr(value)
        message += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
    return message


def _newer_minor(value: Any, path: str) -> tuple[bool, list[Finding]]:
    """Whether ``value`` declares a newer minor version; a finding if its major is unsupported."""
    version = value.get("spec_version") if isinstance(value, dict) else None
    match = _VERSION_RE.match(version) if isinstance(version, str) else None
    if match is None:
        return False, []  # the schema reports a missing or malformed version
    major, minor = (_version_number(match.group(i)) for i in (1, 2))
    if major != _MAJOR:
        shown = version if len(version) <= 40 else f"{version[:20]}... ({len(version)} characters)"
        return False, [
            finding("VERSION_UNSUPPORTED", path, f"spec_version {shown} has major version {major if major is not None else 'beyond any'}; this validator implements {_MAJOR}.x", json_pointer("spec_version"))
        ]
    return minor is None or minor > _MINOR, []


def _version_number(digits: str) -> Optional[int]:
    """The value of a version part, or None when it has more than 18 significant digits (then it
    is larger than any version this package knows, and is never converted: Python refuses to
    convert more than 4300 digits)."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 18 else None


def _drop(value: Any, loc: tuple[Any, ...]) -> None:
    for key in loc[:-1]:
        value = value[key]
    value.pop(loc[-1], None)


def check_structure(model: type[M], value: Any, path: str, schema_code: str) -> tuple[Optional[M], list[Finding]]:
    """``value`` as a ``model`` instance, or None with the findings that say why it is not one."""
    newer, findings = _newer_minor(value, path)
    if findings:
        return None, findings
    try:
        return model.model_validate(value), []
    except ValidationError as exc:
        errors = exc.errors()
    if newer:
        unknown = [tuple(e["loc"]) for e in errors if e["type"] == "extra_forbidden"]
        if unknown:
            value = copy.deepcopy(value)
            for loc in unknown:
                findings.append(finding("VERSION_UNKNOWN_FIELD", path, f"field {loc[-1]!r} is not defined in spec {SPEC_VERSION}; not checked", json_pointer(*loc)))
                _drop(value, loc)
            try:
                return model.model_validate(value), findings
            except ValidationError as exc:
                errors = exc.errors()
    for error in errors:
        loc = tuple(error["loc"])
        findings.append(finding(_code_for(schema_code, loc), path, _describe(error), json_pointer(*loc)))
    return None, findings


def check_manifest(value: Any, path: str) -> tuple[Optional[Manifest], list[Finding]]:
    """Structure check of a parsed manifest (MANIFEST-1, VERSION-1)."""
    return check_structure(Manifest, value, path, "MANIFEST_SCHEMA")


def check_run_index(value: Any, path: str) -> tuple[Optional[RunIndex], list[Finding]]:
    """Structure check of a parsed run index (RUN-1, VERSION-1)."""
    return check_structure(RunIndex, value, path, "RUN_INDEX_SCHEMA")
