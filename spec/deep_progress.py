"""``validate --deep``'s progress bar on a terminal: bytes and files hashed, rate and ETA.

The bar is tqdm's (imported only here, only when stderr is a terminal and the output is text);
the width is the terminal's (80 x 24 where it reports none); the totals come from the manifests of the checkpoints to be hashed, read before hashing starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator

from ckptspec.documents import load_manifest
from ckptspec.file_digest import observe_hashing
from ckptspec.layout import LAYOUT, checkpoint_dir_name, committed_steps


def listed_totals(path: str, kind: str) -> tuple[int, int]:
    """Bytes and files the manifests under ``path`` (a checkpoint or run directory) list; what
    cannot be read counts as nothing (the validator reports it)."""
    directories = (
        [path]
        if kind == "checkpoint"
        else [os.path.join(path, checkpoint_dir_name(s)) for s in committed_steps(path)]
    )
    size = files = 0
    for directory in directories:
        try:
            manifest, _ = load_manifest(os.path.join(directory, LAYOUT.manifest_file))
        except OSError:
            continue
        for entry in (f for c in manifest.components for f in c.files) if manifest else ():
            size, files = size + entry.size, files + 1
    return size, files


@contextlib.contextmanager
def hashing_progress(path: str, kind: str) -> Iterator[None]:
    """Show a progress bar on stderr while the block hashes the files of ``path``."""
    from tqdm import tqdm

    total, files = listed_totals(path, kind)
    size = shutil.get_terminal_size()  # tqdm draws nothing on a terminal that reports 0 rows
    done = 0
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"hashing {os.path.basename(path.rstrip('/')) or path}",
        file=sys.stderr,
        leave=False,
        ncols=size.columns,
        nrows=size.lines,
        mininterval=0.2,
    ) as bar:
        bar.set_postfix_str(f"0/{files} files")

        def advance(n: int, file_done: bool) -> None:
            nonlocal done
            if file_done:
                done += 1
                bar.set_postfix_str(f"{done}/{files} files", refresh=False)
            else:
                bar.update(n)

        with observe_hashing(advance):
            yield
