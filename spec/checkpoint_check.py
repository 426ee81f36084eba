"""Validating one checkpoint directory: its manifest, its name and its files (files stage)."""

from __future__ import annotations

import errno
import os
import stat

from ckptspec.confined import is_inside, link_ancestor, resolve, scan_tree
from ckptspec.documents import load_manifest
from ckptspec.file_digest import algorithm_of, digest_file
from ckptspec.findings import Finding, finding, json_pointer
from ckptspec.layout import LAYOUT, parse_checkpoint_dir
from ckptspec.manifest import Manifest

_CHANGED_WHILE_READ = {
    errno.ENOENT: "FILE_MISSING",
    errno.EINVAL: "FILE_NOT_REGULAR",
    errno.ELOOP: "FILE_NOT_REGULAR",
}
"""A listed file replaced after it was resolved (deleted; a FIFO or a link swapped in): a finding.
Any other error reading it means the checkpoint cannot be checked."""

_RESOLUTION_CODES = {
    "missing": "FILE_MISSING",
    "not_regular": "FILE_NOT_REGULAR",
    "escapes": "PATH_ESCAPES",
}


def _manifest_problem(directory: str, real_root: str) -> Finding | None:
    """A finding if ``manifest.json`` is absent, not a regular file, or a link leaving the directory;
    raises ``OSError`` when it cannot be examined."""
    path = os.path.join(directory, LAYOUT.manifest_file)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return finding(
            "CHECKPOINT_NO_MANIFEST",
            directory,
            f"no {LAYOUT.manifest_file}: this directory is not a committed checkpoint",
        )
    if stat.S_ISLNK(st.st_mode):
        real = os.path.realpath(path)
        if not is_inside(real_root, real):
            return finding(
                "PATH_ESCAPES",
                path,
                f"is a symbolic link to {real}, outside the checkpoint directory; not followed",
            )
        if not os.path.isfile(real):
            return finding(
                "CHECKPOINT_NO_MANIFEST",
                path,
                "is a symbolic link to something that is not a regular file",
            )
    elif not stat.S_ISREG(st.st_mode):
        return finding("CHECKPOINT_NO_MANIFEST", path, "is not a regular file")
    return None


def check_files(directory: str, manifest: Manifest, *, deep: bool) -> list[Finding]:
    """LAYOUT-5/6/7: every listed file exists inside ``directory`` as a regular file of the listed size
    (and, with ``deep``, its digest), and no other regular file is there."""
    real_root = os.path.realpath(directory)
    tree = scan_tree(directory)
    findings: list[Finding] = []
    listed: set[str] = {LAYOUT.manifest_file}
    manifest_path = os.path.join(directory, LAYOUT.manifest_file)
    for ci, component in enumerate(manifest.components):
        for fi, entry in enumerate(component.files):
            if entry.path == LAYOUT.manifest_file:
                continue  # the manifest listing itself is DUPLICATE_FILE (rule stage), not a payload to check
            listed.add(entry.path)
            r = resolve(directory, real_root, tree, entry.path)
            if r.status == "ok" and r.size == entry.size and not deep:
                continue
            file_path = os.path.join(directory, entry.path)
            where = json_pointer("components", ci, "files", fi)
            if r.status != "ok":
                findings.append(
                    finding(
                        _RESOLUTION_CODES[r.status],
                        file_path,
                        f"listed by component {component.name!r} but {r.detail}",
                        where,
                    )
                )
                continue
            if r.size != entry.size:
                findings.append(
                    finding(
                        "FILE_SIZE_MISMATCH",
                        file_path,
                        f"is {r.size} bytes, the manifest says {entry.size}",
                        where,
                    )
                )
                continue
            if deep and r.real_path is not None:
                try:
                    digest = digest_file(r.real_path, algorithm_of(entry.digest), entry.size)
                except OSError as exc:
                    changed = _CHANGED_WHILE_READ.get(exc.errno or 0)
                    if (
                        changed is None
                    ):  # it is there but cannot be read: not a verdict on the checkpoint
                        raise OSError(exc.errno, exc.strerror, file_path) from None
                    findings.append(
                        finding(
                            changed,
                            file_path,
                            f"changed while it was checked: {exc.strerror}",
                            where,
                        )
                    )
                    continue
                if digest != entry.digest:
                    findings.append(
                        finding(
                            "FILE_DIGEST_MISMATCH",
                            file_path,
                            f"has digest {digest}, the manifest says {entry.digest}",
                            where,
                        )
                    )
    # a link to a directory that listed paths go through is accounted for by those paths
    ancestors = {
        a for a in (link_ancestor(tree, rel) for rel in listed if rel not in tree) if a is not None
    }
    for rel, st in sorted(tree.items()):
        if rel in listed or rel in ancestors:
            continue
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            findings.append(
                finding(
                    "UNLISTED_FILE",
                    os.path.join(directory, rel),
                    f"is not listed in {manifest_path}",
                )
            )
    return findings


def check_checkpoint(
    directory: str, *, deep: bool = False, run_id: str | None = None
) -> tuple[Manifest | None, list[Finding]]:
    """Validate the checkpoint directory ``directory``; return its manifest (None if unusable) and the findings.

    ``run_id``, when given, is the run the checkpoint is stored in (LAYOUT-1). Raises ``OSError``
    (naming the file) when the manifest, or under ``deep`` a listed file, exists but cannot be read.
    """
    problem = _manifest_problem(directory, os.path.realpath(directory))
    if problem is not None:
        return None, [problem]
    manifest_path = os.path.join(directory, LAYOUT.manifest_file)
    manifest, findings = load_manifest(
        manifest_path, follow_links=True
    )  # a link is confined by _manifest_problem
    if manifest is None:
        return None, findings
    name_step = parse_checkpoint_dir(os.path.basename(os.path.realpath(directory)))
    if name_step is not None and name_step != manifest.step:
        findings.append(
            finding(
                "DIR_STEP_MISMATCH",
                directory,
                f"directory name encodes step {name_step} but the manifest's step is {manifest.step}",
            )
        )
    if run_id is not None and manifest.run_id != run_id:
        findings.append(
            finding(
                "CHECKPOINT_RUN_ID",
                manifest_path,
                f"run_id is {manifest.run_id!r} but the checkpoint is stored in run {run_id!r}",
                json_pointer("run_id"),
            )
        )
    findings += check_files(directory, manifest, deep=deep)
    return manifest, findings
