"""The hashing writer records the digest of the bytes that reached each file, whatever the digest
algorithm and however the writes are chunked; a stream rewritten in place has no recorded digest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ckptspec.checkpointing.hashing_writer import CONCURRENT_HASH_BYTES, HashingFileSystem
from ckptspec.file_digest import ALGORITHMS, digest_bytes


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_hashing_writer_records_the_digest_of_what_reached_the_file(
    tmp_path: Path, algorithm: str
) -> None:
    fs = HashingFileSystem(algorithm)
    chunks = [os.urandom(n) for n in (7, CONCURRENT_HASH_BYTES, 3 * CONCURRENT_HASH_BYTES + 5, 100)]
    sequential, seeked = tmp_path / "sequential.bin", tmp_path / "seeked.bin"
    with fs.create_stream(sequential, "wb") as stream:
        for chunk in chunks:
            assert stream.write(chunk) == len(chunk)
    with fs.create_stream(seeked, "wb") as stream:
        stream.write(chunks[1])
        stream.seek(0)
        stream.write(chunks[0])
    data = sequential.read_bytes()
    assert fs.digests[sequential] == (len(data), digest_bytes(data, algorithm))
    assert seeked not in fs.digests  # rewritten in place: the caller must hash it from disk
