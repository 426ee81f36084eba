"""``validate --deep``'s watch over hashing: how far it got, where it must stop (``--timeout``),
its cost estimate and its progress bar on a terminal.

The bar is tqdm's (imported only here, only when stderr is a terminal and the output is text);
the width is the terminal's (80 x 24 where it reports none); the totals come from the manifests
of the checkpoints to be hashed, read before hashing starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ckptspec.documents import load_manifest
from ckptspec.file_digest import algorithm_of, new_hasher, observe_hashing
from ckptspec.layout import LAYOUT, checkpoint_dir_name, committed_steps


def listed_bytes(path: str, kind: str) -> dict[str, tuple[int, int]]:
    """Bytes and files the manifests under ``path`` (a checkpoint or run directory) list, by
    digest algorithm; what cannot be read counts as nothing (the validator reports it)."""
    directories = (
        [path]
        if kind == "checkpoint"
        else [os.path.join(path, checkpoint_dir_name(s)) for s in committed_steps(path)]
    )
    totals: dict[str, tuple[int, int]] = {}
    for directory in directories:
        try:
            manifest, _ = load_manifest(os.path.join(directory, LAYOUT.manifest_file))
        except OSError:
            continue
        for entry in (f for c in manifest.components for f in c.files) if manifest else ():
            size, files = totals.get(algorithm_of(entry.digest), (0, 0))
            totals[algorithm_of(entry.digest)] = (size + entry.size, files + 1)
    return totals


def hash_rate(algorithm: str, sample_bytes: int = 16 * 1024 * 1024) -> float:
    """Bytes per second ``algorithm`` hashes in memory on this machine, measured on
    ``sample_bytes`` (a few milliseconds; reading from disk can only be slower)."""
    data = bytes(sample_bytes)
    start = time.perf_counter()
    new_hasher(algorithm).update(data)
    return sample_bytes / max(time.perf_counter() - start, 1e-9)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def cost_estimate(totals: dict[str, tuple[int, int]]) -> str:
    """One line: the bytes and files to hash and the time hashing alone takes at the rate each
    algorithm measures here (``bytes ÷ rate``; a slower disk adds to it)."""
    seconds = 0.0
    rates = []
    for algorithm, (size, _) in sorted(totals.items()):
        rate = hash_rate(algorithm)
        seconds += size / rate
        rates.append(f"{algorithm} at {_size(rate)}/s")
    size = sum(s for s, _ in totals.values())
    files = sum(f for _, f in totals.values())
    return (
        f"ckptspec validate: --deep will hash {_size(size)} in {files} file(s)"
        f" ({', '.join(rates) or 'nothing listed'}): at least {seconds:.1f} s"
    )


class DeepTimeout(Exception):
    """``validate --deep`` reached its ``--timeout`` while hashing."""


@dataclass
class Tally:
    """How far hashing got: bytes and files hashed of the totals listed."""

    total_bytes: int
    total_files: int
    hashed_bytes: int = 0
    hashed_files: int = 0
    totals: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    deadline: float | None = field(default=None, repr=False)

    def progress(self) -> str:
        """``hashed 3 of 10 files (12.0 MiB of 40.0 MiB)``."""
        return (
            f"hashed {self.hashed_files} of {self.total_files} files"
            f" ({_size(self.hashed_bytes)} of {_size(self.total_bytes)})"
        )


def listed_tally(path: str, kind: str, deadline: float | None = None) -> Tally:
    """A :class:`Tally` of nothing hashed yet out of what the manifests under ``path`` list."""
    totals = listed_bytes(path, kind)
    return Tally(
        sum(s for s, _ in totals.values()),
        sum(f for _, f in totals.values()),
        totals=totals,
        deadline=deadline,
    )


@contextlib.contextmanager
def watched_hashing(path: str, tally: Tally, *, bar: bool = False) -> Iterator[None]:
    """Count in ``tally`` what the block hashes of ``path``; raise :class:`DeepTimeout` inside
    it once ``time.monotonic()`` passes ``tally.deadline`` (checked after every chunk of every
    file); with ``bar``, print the cost estimate and show a progress bar on stderr."""
    with contextlib.ExitStack() as stack:
        show = None
        if bar:
            print(cost_estimate(tally.totals), file=sys.stderr, flush=True)
            show = stack.enter_context(_bar(path, tally))

        def advance(n: int, file_done: bool) -> None:
            tally.hashed_bytes += n
            tally.hashed_files += file_done
            if show is not None:
                show(n, file_done)
            if tally.deadline is not None and time.monotonic() >= tally.deadline:
                raise DeepTimeout

        stack.enter_context(observe_hashing(advance))
        yield


@contextlib.contextmanager
def _bar(path: str, tally: Tally) -> Iterator[object]:
    from tqdm import tqdm

    size = shutil.get_terminal_size()  # tqdm draws nothing on a terminal that reports 0 rows
    with tqdm(
        total=tally.total_bytes,
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
        bar.set_postfix_str(f"0/{tally.total_files} files")

        def show(n: int, file_done: bool) -> None:
            if file_done:
                bar.set_postfix_str(
                    f"{tally.hashed_files}/{tally.total_files} files", refresh=False
                )
            else:
                bar.update(n)

        yield show
