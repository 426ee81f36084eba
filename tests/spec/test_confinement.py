"""The reader stays inside the checkpoint directory, and never blocks or crashes on odd files."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

import pytest
from spec_cases import EXAMPLES

from ckptspec import checkpoint_check
from ckptspec.file_digest import ALGORITHMS, HASH_CHUNK_BYTES, digest_bytes, digest_file
from ckptspec.validator import validate_path

CHECKPOINT = EXAMPLES / "valid" / "checkpoint-world2" / "step-000000100"


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    shutil.copytree(CHECKPOINT, tmp_path / "step-000000100", symlinks=True)
    return tmp_path / "step-000000100"


def codes(path: Path, deep: bool = True) -> list[str]:
    return sorted({f.code for f in validate_path(path, deep=deep)})


def test_manifest_symlink_leaving_the_directory(ckpt: Path, tmp_path: Path) -> None:
    (ckpt / "manifest.json").rename(tmp_path / "elsewhere.json")
    os.symlink(tmp_path / "elsewhere.json", ckpt / "manifest.json")
    assert codes(ckpt) == ["PATH_ESCAPES"]


def test_link_inside_the_directory_is_followed(ckpt: Path) -> None:
    (ckpt / "rng").rename(ckpt / "rng-real")
    os.symlink("rng-real", ckpt / "rng")
    assert codes(ckpt) == [
        "UNLISTED_FILE"
    ]  # rng-real/* are reached through the link, but not listed under that name


def test_escaping_link_to_an_identical_file_is_still_not_followed(
    ckpt: Path, tmp_path: Path
) -> None:
    target = tmp_path / "rank-00000.pt"
    shutil.copy(ckpt / "rng" / "rank-00000.pt", target)
    (ckpt / "rng" / "rank-00000.pt").unlink()
    os.symlink(target, ckpt / "rng" / "rank-00000.pt")
    assert codes(ckpt) == ["PATH_ESCAPES"]


def test_a_fifo_is_not_opened(ckpt: Path) -> None:
    (ckpt / "trainer.json").unlink()
    os.mkfifo(ckpt / "trainer.json")
    assert codes(ckpt) == ["FILE_NOT_REGULAR"]  # and the test does not hang


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_streamed_digest_matches_the_one_shot_digest(tmp_path: Path, algorithm: str) -> None:
    data = os.urandom(HASH_CHUNK_BYTES * 2 + 12345)
    (tmp_path / "blob").write_bytes(data)
    assert digest_file(str(tmp_path / "blob"), algorithm) == digest_bytes(data, algorithm)
    if algorithm == "sha256":
        assert (
            digest_file(str(tmp_path / "blob"), algorithm)
            == "sha256:" + hashlib.sha256(data).hexdigest()
        )


@pytest.mark.parametrize(
    "error, code", [(errno.ENOENT, "FILE_MISSING"), (errno.ELOOP, "FILE_NOT_REGULAR")]
)
def test_a_file_changed_between_resolution_and_reading_is_a_finding(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch, error: int, code: str
) -> None:
    """validating.md: a listed file deleted, or replaced by a link, after it resolved to a regular
    file and before it is read is a finding, not a checkpoint that cannot be checked."""

    def replaced(path: str, *args: object) -> str:
        if path.endswith("trainer.json"):
            raise OSError(error, os.strerror(error), path)
        return digest_file(path, *args)

    monkeypatch.setattr(checkpoint_check, "digest_file", replaced)
    assert codes(ckpt) == [code]
    assert codes(ckpt, deep=False) == []
