"""Loading a manifest or run index file through every document-level check.

Each loader runs the document stage (limits, UTF-8, JSON), the structure stage (schema,
version) and, when the structure is valid, the cross-field rules, and returns the parsed model
(None when the structure is not valid) with all findings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ckptspec.findings import Finding
from ckptspec.jsonload import read_document
from ckptspec.manifest import Manifest
from ckptspec.rules import check_manifest_rules, check_run_index_rules
from ckptspec.run_index import RunIndex
from ckptspec.structure import check_manifest, check_run_index

M = TypeVar("M", Manifest, RunIndex)


def _load(
    path: str,
    follow_links: bool,
    structure: Callable[[Any, str], tuple[M | None, list[Finding]]],
    rules: Callable[[M, str], list[Finding]],
) -> tuple[M | None, list[Finding]]:
    """Document stage, then ``structure``, then (on a valid structure) ``rules``."""
    value, findings = read_document(path, follow_links=follow_links)
    if findings:
        return None, findings
    model, findings = structure(value, path)
    if model is not None:
        findings += rules(model, path)
    return model, findings


def load_manifest(
    path: str, *, follow_links: bool = False
) -> tuple[Manifest | None, list[Finding]]:
    """The manifest at ``path`` and its findings; raises ``OSError`` when it cannot be read.

    ``follow_links`` lets a symbolic link that the caller has confined be read (see
    :func:`ckptspec.jsonload.read_document`)."""
    return _load(path, follow_links, check_manifest, check_manifest_rules)


def load_run_index(
    path: str, *, follow_links: bool = False
) -> tuple[RunIndex | None, list[Finding]]:
    """The run index at ``path`` and its findings; raises ``OSError`` when it cannot be read."""
    return _load(path, follow_links, check_run_index, check_run_index_rules)
