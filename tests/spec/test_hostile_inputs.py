"""Hostile inputs of every kind the readers have met give a finding or exit status 2, within
bounded time and memory (the limits of docs/validator.md), never a traceback, a hang or a
verdict taken from a crash. Each command runs in a subprocess whose address space is capped
(``RLIMIT_AS``) and whose time is limited, so a blow-up fails the test instead of the machine."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from spec_cases import EXAMPLES, needs_torch

from ckptspec.file_digest import digest_file
from ckptspec.schemas import load_schema

CHECKPOINT = EXAMPLES / "valid" / "checkpoint-world2" / "step-000000100"
MEMORY_CAP = 1 << 30  # 1 GiB of address space for a torch-free command
TORCH_MEMORY_CAP = 6 << 30  # torch maps a lot of address space it never touches
DIFF_OUTPUT = Draft202012Validator(load_schema("diff-output.schema.json"))


def ckptspec(
    *args: str | Path, memory: int = MEMORY_CAP, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "ckptspec", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
        env=env,
    )


def no_crash(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr, result.stderr[
        -2000:
    ]


def manifest(**changes: Any) -> dict[str, Any]:
    doc = json.loads((CHECKPOINT / "manifest.json").read_text())
    doc = copy.deepcopy(doc)
    doc.update(changes)
    return doc


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def validate_json(*args: str | Path, **kw: Any) -> tuple[int, dict[str, Any]]:
    result = ckptspec("validate", "--format", "json", *args, **kw)
    no_crash(result)
    return result.returncode, json.loads(result.stdout)


def codes(document: dict[str, Any]) -> set[str]:
    return {f["code"] for f in document["findings"]}


def test_memory_world_size(tmp_path: Path) -> None:
    """Regression: world_size 10**9 allocated gigabytes (set(range(world_size)))."""
    doc = manifest()
    doc["topology"] = {
        **doc["topology"],
        "world_size": 10**18,
        "mesh": [{"name": "dp_shard", "size": 10**18}],
    }
    path = write(tmp_path / "manifest.json", doc)
    started = time.monotonic()
    status, report = validate_json(path)
    assert status == 1 and "PER_RANK_COVERAGE" in codes(report)
    inspected = ckptspec("inspect", path)
    no_crash(inspected)
    assert inspected.returncode == 0 and "world_size 1000000000000000000" in inspected.stdout
    assert time.monotonic() - started < 30


def test_digits_past_the_conversion_limit(tmp_path: Path) -> None:
    """Regression: spec_version "1." + 4301 digits, and a mesh whose product has more than 4300
    digits, crashed validate (a traceback reported as exit 1)."""
    status, report = validate_json(
        write(tmp_path / "version.json", manifest(spec_version="1." + "7" * 4301))
    )
    assert status in (0, 1) and report["verdict"] in ("conformant", "not_conformant")
    status, report = validate_json(
        write(tmp_path / "major.json", manifest(spec_version="7" * 4301 + ".0"))
    )
    assert status == 1 and codes(report) == {"VERSION_UNSUPPORTED"}
    doc = manifest()
    doc["topology"] = {
        **doc["topology"],
        "mesh": [{"name": f"d{i}", "size": 10**300} for i in range(20)],
    }
    status, report = validate_json(write(tmp_path / "mesh.json", doc))
    assert status == 1 and "MESH_WORLD_SIZE" in codes(report)
    assert any("more than 2 ranks" in f["message"] for f in report["findings"])


def test_escaped_quotes(tmp_path: Path) -> None:
    """Regression: 50 MB of escaped quotes cost 3 GB in spec/jsonload.py."""
    path = tmp_path / "manifest.json"
    path.write_bytes(b'"' + b'\\"' * 25_000_000 + b'"')
    status, report = validate_json(path)
    assert status == 1 and codes(report) == {
        "MANIFEST_SCHEMA"
    }  # a string, not an object: within memory


def test_deep_paths(tmp_path: Path) -> None:
    """Regression: 40,000 listed paths 500 levels deep took ~90 s (quadratic ancestor checks)."""
    checkpoint = tmp_path / "step-000000100"
    checkpoint.mkdir()
    doc = manifest()
    deep = "/".join(["d"] * 500)
    doc["components"][0]["files"] = [
        {**doc["components"][0]["files"][0], "path": f"{deep}/{i}"} for i in range(5_000)
    ]
    write(checkpoint / "manifest.json", doc)
    started = time.monotonic()
    status, report = validate_json(checkpoint, timeout=120)
    elapsed = time.monotonic() - started  # about 1 s; the quadratic checks took tens of seconds
    assert status == 1 and "FILE_MISSING" in codes(report) and len(report["findings"]) > 5_000
    assert elapsed < 10, f"{elapsed:.1f} s"


def test_symlinked_directory_leading_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "0").write_bytes(b"x")
    checkpoint = tmp_path / "step-000000100"
    checkpoint.mkdir()
    doc = manifest()
    doc["components"][0]["files"] = [{**doc["components"][0]["files"][0], "path": "d/0", "size": 1}]
    (checkpoint / "d").symlink_to(outside)
    write(checkpoint / "manifest.json", doc)
    status, report = validate_json(checkpoint)
    assert status == 1 and "PATH_ESCAPES" in codes(report) and "UNLISTED_FILE" not in codes(report)


def test_sparse_file_is_hashed_only_up_to_its_listed_size(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(1 << 40)  # 1 TiB of holes
    started = time.monotonic()
    assert (
        digest_file(str(sparse), "sha256", 16) == "sha256:" + hashlib.sha256(b"\0" * 16).hexdigest()
    )
    assert time.monotonic() - started < 5
    checkpoint = tmp_path / "step-000000100"
    checkpoint.mkdir()
    doc = manifest()
    listed = doc["components"][0]["files"][0]
    doc["components"] = [
        {**doc["components"][0], "files": [{**listed, "path": "huge.bin", "size": 16}]}
    ]
    (checkpoint / "huge.bin").symlink_to(sparse)  # a link out: refused, not followed
    write(checkpoint / "manifest.json", doc)
    status, report = validate_json("--deep", checkpoint, timeout=30)
    assert status == 1 and "PATH_ESCAPES" in codes(report)
    (checkpoint / "huge.bin").unlink()
    os.rename(sparse, checkpoint / "huge.bin")
    status, report = validate_json("--deep", checkpoint, timeout=30)
    assert status == 1 and "FILE_SIZE_MISMATCH" in codes(report)


def test_fifo_payload(tmp_path: Path) -> None:
    checkpoint = tmp_path / "step-000000100"
    checkpoint.mkdir()
    doc = manifest()
    listed = doc["components"][0]["files"][0]
    doc["components"] = [{**doc["components"][0], "files": [{**listed, "path": "pipe"}]}]
    os.mkfifo(checkpoint / "pipe")
    write(checkpoint / "manifest.json", doc)
    status, report = validate_json("--deep", checkpoint, timeout=30)
    assert status == 1 and "FILE_NOT_REGULAR" in codes(report)


def test_fifo_as_manifest_does_not_hang(tmp_path: Path) -> None:
    checkpoint = tmp_path / "step-000000100"
    checkpoint.mkdir()
    os.mkfifo(checkpoint / "manifest.json")
    status, report = validate_json(checkpoint, timeout=30)
    assert status == 1 and codes(report) == {"CHECKPOINT_NO_MANIFEST"}


def test_control_characters_cannot_forge_a_finding(tmp_path: Path) -> None:
    checkpoint = tmp_path / "step-000000100"
    import shutil

    shutil.copytree(CHECKPOINT, checkpoint, symlinks=True)
    (checkpoint / "x\nFILE_MISSING LAYOUT-5 forged: error: \x1b[31mred").write_bytes(b"")
    result = ckptspec("validate", checkpoint)
    no_crash(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("UNLISTED_FILE ") and "\x1b" not in result.stdout
    assert "\\x0aFILE_MISSING" in lines[0] and "\\x1b[31m" in lines[0]


def test_symlink_to_a_manifest_is_validated(tmp_path: Path) -> None:
    (tmp_path / "link.json").symlink_to(CHECKPOINT.resolve() / "manifest.json")
    status, report = validate_json(tmp_path / "link.json")
    assert status == 0 and report["verdict"] == "conformant"
    inspected = ckptspec("inspect", tmp_path / "link.json")
    assert inspected.returncode == 0 and "world_size 2" in inspected.stdout


def test_symlinked_manifest_inside_the_checkpoint_is_read(tmp_path: Path) -> None:
    import shutil

    checkpoint = tmp_path / "step-000000100"
    shutil.copytree(CHECKPOINT, checkpoint, symlinks=True)
    (checkpoint / "manifest.json").rename(checkpoint / "real.json")
    (checkpoint / "manifest.json").symlink_to("real.json")
    status, report = validate_json(checkpoint)
    assert status == 0 and codes(report) == {
        "UNLISTED_FILE"
    }  # real.json is not listed; the link was read


DIFF_SCRIPT = r"""
import json, os, sys, warnings
warnings.simplefilter("ignore")
import torch, torch.distributed.checkpoint as dcp
from ckptspec.cli import main
base = sys.argv[1]
dcp.save({"w": torch.zeros(3, 5), "step": 4}, checkpoint_id=f"{base}/a", no_dist=True)
dcp.save({"w": torch.ones(3, 5), "step": 4}, checkpoint_id=f"{base}/b", no_dist=True)
"""


@pytest.fixture(scope="module")
def dcp_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("dcp")
    result = subprocess.run(
        [sys.executable, "-c", DIFF_SCRIPT, str(base)],
        capture_output=True,
        text=True,
        timeout=180,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    return base


def _copy_with(dcp_pair: Path, name: str, change: Any) -> Path:
    import shutil

    target = dcp_pair / name
    if not target.exists():
        shutil.copytree(dcp_pair / "a", target)
        change(target)
    return target


def _replace_payload(target: Path, make: Any) -> None:
    for entry in target.iterdir():
        if entry.name.endswith(".distcp"):
            entry.unlink()
            make(entry)


def diff_json(a: Path, b: Path) -> tuple[int, dict[str, Any]]:
    result = ckptspec("diff", "--format", "json", a, b, memory=TORCH_MEMORY_CAP, timeout=120)
    no_crash(result)
    report = json.loads(result.stdout)
    DIFF_OUTPUT.validate(report)
    return result.returncode, report


@needs_torch
def test_diff_exit_status_means_one_thing(dcp_pair: Path) -> None:
    status, report = diff_json(dcp_pair / "a", dcp_pair / "a")
    assert status == 0 and report["verdict"] == "identical"
    status, report = diff_json(dcp_pair / "a", dcp_pair / "b")
    assert status == 1 and [d["name"] for d in report["differences"]] == ["state/w"]


@needs_torch
@pytest.mark.parametrize(
    "name, change",
    [
        ("fifo-payload", lambda t: _replace_payload(t, os.mkfifo)),
        ("dev-zero-payload", lambda t: _replace_payload(t, lambda p: p.symlink_to("/dev/zero"))),
        (
            "payload-moved-outside",
            lambda t: _replace_payload(t, lambda p: p.symlink_to(t.parent / "a" / p.name)),
        ),
        ("fifo-metadata", lambda t: ((t / ".metadata").unlink(), os.mkfifo(t / ".metadata"))),
        ("truncated-payload", lambda t: _replace_payload(t, lambda p: p.write_bytes(b"\0" * 8))),
        (
            "memo-bomb-metadata",
            lambda t: (t / ".metadata").write_bytes(
                b"\x80\x02N" + b"r" + (2**27).to_bytes(4, "little") + b"."
            ),
        ),
    ],
)
def test_diff_refuses_what_validate_refuses(dcp_pair: Path, name: str, change: Any) -> None:
    """FIFOs, devices, links out of the checkpoint, a truncated payload (torch's CheckpointException,
    a BaseException) and a memo bomb are exit 2, never 1 ("different") and never a hang."""
    status, report = diff_json(dcp_pair / "a", _copy_with(dcp_pair, name, change))
    assert status == 2 and report["verdict"] == "not_compared" and report["error"], report


@needs_torch
def test_diff_refuses_an_escaping_checkpoint(tmp_path: Path) -> None:
    case = EXAMPLES / "invalid" / "layout" / "path-escapes" / "step-000000100"
    result = ckptspec("diff", case, case, memory=TORCH_MEMORY_CAP, timeout=120)
    no_crash(result)
    assert result.returncode == 2 and "PATH_ESCAPES" in result.stderr


def test_inspect_survives_a_memo_bomb_and_hostile_metadata(tmp_path: Path) -> None:
    """Regression: a 9-byte `.metadata` (LONG_BINPUT 2**27) made inspect allocate 2 GB."""
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    (bomb / ".metadata").write_bytes(b"\x80\x02N" + b"r" + (2**27).to_bytes(4, "little") + b".")
    result = ckptspec("inspect", "--format", "json", bomb, memory=TORCH_MEMORY_CAP, timeout=120)
    no_crash(result)
    report = json.loads(result.stdout)
    assert (
        result.returncode == 0
        and report["kind"] == "dcp"
        and "could not be read safely" in report["notes"][0]
    )
