"""Running the ckptspec validator on what a trainer wrote (``validate --deep``)."""

from __future__ import annotations

from pathlib import Path


def findings(path: str | Path) -> list[tuple[str, str, str]]:
    """``(requirement, severity, line)`` of every finding of a deep validation of ``path``.

    A path the validator cannot check at all is reported as one ``LAYOUT-1`` error finding.
    """
    from ckptspec.validator import CannotCheck, validate_path

    try:
        found = validate_path(path, deep=True)
    except CannotCheck as exc:
        return [("LAYOUT-1", "error", f"cannot check {path}: {exc}")]
    return [(f.requirement, str(getattr(f.severity, "value", f.severity)), f.line()) for f in found]


def error_findings(path: str | Path) -> list[str]:
    """The lines of the error findings of a deep validation of ``path``."""
    return [line for _, severity, line in findings(path) if severity == "error"]
