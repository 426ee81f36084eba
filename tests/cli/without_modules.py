"""Run the ``ckptspec`` command in a Python that genuinely lacks some installed modules.

The environment's site-packages is mirrored into a temporary folder of symbolic links that leaves
the named distributions out; a ``python -S`` process adds that folder as its only site directory
(so the editable install's ``.pth`` finder still works). Nothing is patched inside the process:
``import torch`` fails there exactly as on a machine where torch was never installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path


def site_without(hidden: Iterable[str], where: Path) -> Path:
    """A site directory holding everything of this environment's site-packages but the
    top-level modules and distributions named in ``hidden`` (e.g. ``torch``, ``pytest``)."""
    hidden = {h.lower() for h in hidden}
    site = Path(sysconfig.get_paths()["purelib"])
    target = where / "site-packages"
    target.mkdir()
    for entry in site.iterdir():
        stem = entry.name.split("-")[0].split(".")[0].lower().lstrip("_")
        if stem in hidden:
            continue
        (target / entry.name).symlink_to(entry)
    return target


def run_without(
    hidden: Iterable[str], argv: list[str], where: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``ckptspec *argv`` in a process where the modules ``hidden`` are not installed."""
    where.mkdir(parents=True, exist_ok=True)
    site = site_without(hidden, where)
    code = f"import site, sys; site.addsitedir({str(site)!r}); from ckptspec.cli import main; sys.exit(main({argv!r}))"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    return subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=where,
    )
