"""File digests (spec section *digest*, "File digests"): the algorithms a manifest may name, and
the one streaming reader that hashes a payload file.

A manifest lists each payload file's digest as ``<algorithm>:<lower-case hex>`` (spec 2.x;
spec 1.x manifests carry ``sha256`` and are read as ``sha256:<hex>``). Every algorithm comes
from a maintained package; none is implemented here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mmap
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import blake3
import google_crc32c
import xxhash

from ckptspec.confined import open_regular

HASH_CHUNK_BYTES = 4 * 1024 * 1024
"""Bytes read per call when a file is hashed from disk."""


class Hasher(Protocol):
    """What the writer and readers need of a hash object (``hashlib``'s interface)."""

    def update(self, data: bytes | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


class _Crc32c:
    """google-crc32c's checksum with ``hashlib``'s interface (its C extension takes ``bytes``
    only, and its ``hexdigest`` returns ``bytes``)."""

    def __init__(self) -> None:
        self._checksum = google_crc32c.Checksum()

    def update(self, data: bytes | memoryview, /) -> None:
        self._checksum.update(data if isinstance(data, bytes) else bytes(data))

    def hexdigest(self) -> str:
        return self._checksum.hexdigest().decode("ascii")


ALGORITHMS: dict[str, tuple[Callable[[], Hasher], int]] = {
    "xxh3-128": (xxhash.xxh3_128, 32),
    "sha256": (hashlib.sha256, 64),
    "blake3": (blake3.blake3, 64),
    "crc32c": (_Crc32c, 8),
}
"""Each algorithm the spec lists, by the name a manifest uses: its hash constructor and the
number of hex digits of its value."""

DEFAULT_ALGORITHM = "xxh3-128"
"""What writers of this package use unless told otherwise (the fastest listed; see the spec's
security considerations for when to choose ``sha256`` instead)."""

DIGEST_PATTERN = (
    "^("
    + "|".join(f"{name}:[0-9a-f]{{{digits}}}" for name, (_, digits) in ALGORITHMS.items())
    + ")$"
)
"""The regular expression of a file digest string, as the schema states it."""


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hash object for ``algorithm``; ``ValueError`` names the listed ones otherwise."""
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"unknown digest algorithm {algorithm!r}; the spec lists {', '.join(ALGORITHMS)}"
        )
    return ALGORITHMS[algorithm][0]()


def format_digest(algorithm: str, hexdigest: str) -> str:
    """The manifest form ``<algorithm>:<hex>``."""
    return f"{algorithm}:{hexdigest}"


def algorithm_of(digest: str) -> str:
    """The algorithm a (schema-valid) digest string names."""
    return digest.partition(":")[0]


class DigestMismatchError(Exception):
    """A file read for loading is not the file its manifest lists (digest, size, or not listed).

    ``path`` names the file, ``problem`` says what differs.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)  # both in args, so that it pickles across ranks
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@contextlib.contextmanager
def verified_file(
    path: str | os.PathLike[str], listed: tuple[int, str] | None
) -> Iterator[io.RawIOBase]:
    """The regular file ``path`` as a read-only, seekable stream over its pages (``mmap``),
    yielded only once its whole content matched ``listed`` (its size and digest string as a
    manifest lists them); :class:`DigestMismatchError` otherwise (also when ``listed`` is None:
    the file is not listed). The content is read from disk once: the digest and the caller read
    the same mapped pages."""
    name = os.fspath(path)
    if listed is None:
        raise DigestMismatchError(name, "is read by the load but not listed in the manifest")
    size, expected = listed
    with os.fdopen(open_regular(name), "rb", buffering=0) as f:
        actual = os.fstat(f.fileno()).st_size
        if actual != size:
            raise DigestMismatchError(name, f"has {actual} bytes, the manifest says {size}")
        mapped = (
            mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ, flags=mmap.MAP_SHARED)
            if size
            else None
        )
    view = memoryview(mapped) if mapped is not None else memoryview(b"")
    try:
        found = digest_bytes(view, algorithm_of(expected))
        if found != expected:
            raise DigestMismatchError(name, f"has digest {found}, the manifest says {expected}")
        with _MemoryStream(view) as stream:
            yield stream
    finally:
        view.release()
        if mapped is not None:
            mapped.close()


class _MemoryStream(io.RawIOBase):
    """A read-only, seekable stream over a buffer (``io.BytesIO`` would copy a mapped file)."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        with memoryview(buffer) as target, target.cast("B") as flat:
            n = max(0, min(len(flat), len(self._view) - self._position))
            flat[:n] = self._view[self._position : self._position + n]
        self._position += n
        return n


def digest_bytes(data: bytes | memoryview, algorithm: str) -> str:
    """The digest string of ``data`` (what :func:`digest_file` gives for a file holding it)."""
    h = new_hasher(algorithm)
    h.update(data)
    return format_digest(algorithm, h.hexdigest())


_observer: Callable[[int, bool], None] | None = None


@contextlib.contextmanager
def observe_hashing(callback: Callable[[int, bool], None]) -> Iterator[None]:
    """Within the block, :func:`digest_file` calls ``callback(bytes_read, False)`` after each chunk
    it hashes and ``callback(0, True)`` after each file (``validate --deep``'s progress bar)."""
    global _observer
    previous, _observer = _observer, callback
    try:
        yield
    finally:
        _observer = previous


def digest_file(real_path: str, algorithm: str, size: int | None = None) -> str:
    """The digest string (``<algorithm>:<hex>``) of the regular file at ``real_path``, streamed;
    raises ``OSError`` if it cannot be read (a FIFO, device or final symlink included).

    With ``size`` (the size the manifest lists), at most ``size`` bytes are read, so a file that
    grows, or is larger than it claims, never makes the hash read past it.
    """
    h = new_hasher(algorithm)
    with os.fdopen(open_regular(real_path), "rb", buffering=0) as f:
        buf = bytearray(HASH_CHUNK_BYTES)
        view = memoryview(buf)
        left = size
        while left is None or left > 0:
            n = f.readinto(view if left is None or left >= len(buf) else view[:left])
            if not n:
                break
            h.update(view[:n])
            if _observer is not None:
                _observer(n, False)
            if left is not None:
                left -= n
    if _observer is not None:
        _observer(0, True)
    return format_digest(algorithm, h.hexdigest())
