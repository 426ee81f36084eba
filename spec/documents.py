"""Loading a manifest or run index file through every document-level check.

Each loader runs the document stage (limits, UTF-8, JSON), the structure stage (schema,
version) and, when the structure is valid, the cross-field rules, and returns the parsed model
(None when the structure is not valid) with all findings.
"""

from __future__ import annotations

from typing import Optional

from ckptspec.findings import Finding
from ckptspec.jsonload import read_document
from ckptspec.manifest import Manifest
from ckptspec.rules import check_manifest_rules, check_run_index_rules
from ckptspec.run_index import RunIndex
from ckptspec.structure import check_manifest, check_run_index


def load_manifest(path: str, *, follow_links: bool = False) -> tuple[Optional[Manifest], list[Finding]]:
    """The manifest at ``path`` and its findings; raises ``OSError`` when it cannot be read.

    ``follow_links`` lets a symbolic link that the caller has confined be read (see
    :func:`ckptspec.jsonload.read_document`)."""
    value, findings = read_document(path, follow_links=follow_links)
    if findings:
        return None, findings
    manifest, findings = check_manifest(value, path)
    if manifest is not None:
        findings += check_manifest_rules(manifest, path)
    return manifest, findings


def load_run_index(path: str, *, follow_links: bool = False) -> tuple[Optional[RunIndex], list[Finding]]:
    """The run index at ``path`` and its findings; raises ``OSError`` when it cannot be read."""
    value, findings = read_document(path, follow_links=follow_links)
    if findings:
        return None, findings
    index, findings = check_run_index(value, path)
    if index is not None:
        findings += check_run_index_rules(index, path)
    return index, findings
