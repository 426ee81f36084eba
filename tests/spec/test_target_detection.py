"""Target detection (docs/spec/validating.md): `ckptspec validate` run as a user would on the wrong
input answers "cannot check this" (exit 2) naming the path, with a "did you mean" hint where one
can be found, and never turns the wrong input into spec findings (exit 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from spec_cases import EXAMPLES

from ckptspec.exit_codes import EXIT_ERROR, EXIT_FAIL, EXIT_OK

VALID_RUN = EXAMPLES / "valid" / "run-complete" / "demo-run"
VALID_CHECKPOINT = EXAMPLES / "valid" / "checkpoint-world2" / "step-000000100"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def ckptspec_validate(*args: object) -> tuple[int, str, str]:
    """``ckptspec validate ARGS`` in a fresh interpreter: exit status, stdout, stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "ckptspec", "validate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def assert_cannot_check(status: int, out: str, err: str, *mentions: str) -> None:
    assert status == EXIT_ERROR, (status, out, err)
    assert out == "", "a path that cannot be checked gets no findings"
    assert "cannot check" in err
    for mention in mentions:
        assert mention in err, (mention, err)


def test_a_case_json_is_not_a_manifest() -> None:
    case = EXAMPLES / "valid" / "checkpoint-world2" / "case.json"
    assert_cannot_check(*ckptspec_validate(case), str(case), "not a manifest or run index")


def test_a_web_app_manifest_json_is_not_a_ckptspec_manifest(tmp_path: Path) -> None:
    web = tmp_path / "manifest.json"
    web.write_text(
        json.dumps({"name": "My App", "short_name": "app", "icons": [], "start_url": "/"})
    )
    assert_cannot_check(*ckptspec_validate(web), str(web))


def test_a_payload_file_names_its_checkpoint() -> None:
    payload = VALID_CHECKPOINT / "model" / "__0_0.distcp"
    assert_cannot_check(
        *ckptspec_validate(payload), str(payload), f"did you mean {VALID_CHECKPOINT}?"
    )


def test_a_directory_inside_a_checkpoint_names_the_checkpoint() -> None:
    assert_cannot_check(
        *ckptspec_validate(VALID_CHECKPOINT / "model"), f"did you mean {VALID_CHECKPOINT}?"
    )


def test_a_folder_holding_a_run_suggests_the_run(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    shutil.copytree(VALID_RUN, outputs / "demo-run", symlinks=True)
    assert_cannot_check(
        *ckptspec_validate(outputs),
        "contains the run directory demo-run",
        f"did you mean {outputs / 'demo-run'}?",
    )


def test_a_folder_of_copied_checkpoints_suggests_the_highest(tmp_path: Path) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    for step in ("step-000000100", "step-000000200"):
        shutil.copytree(VALID_RUN / step, folder / step)
    assert_cannot_check(
        *ckptspec_validate(folder), "no run.json", f"did you mean {folder / 'step-000000200'}?"
    )


def test_the_suggested_path_is_conformant(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    shutil.copytree(VALID_RUN, outputs / "demo-run", symlinks=True)
    _, _, err = ckptspec_validate(outputs)
    suggested = err.split("did you mean ", 1)[1].split("?", 1)[0]
    assert ckptspec_validate(suggested)[0] == EXIT_OK


def test_a_manifest_named_otherwise_is_recognised_by_its_contents(tmp_path: Path) -> None:
    renamed = tmp_path / "step-100.json"
    shutil.copyfile(EXAMPLES / "valid" / "manifest-world2" / "manifest.json", renamed)
    index = tmp_path / "index-copy.json"
    shutil.copyfile(VALID_RUN / "run.json", index)
    status, out, err = ckptspec_validate(renamed, index, "--format", "json")
    assert status == EXIT_OK, err
    assert [t["kind"] for t in json.loads(out)["targets"]] == ["manifest", "run_index"]


def test_a_broken_manifest_json_is_still_a_manifest(tmp_path: Path) -> None:
    broken = tmp_path / "manifest.json"
    broken.write_text('{"spec_version": "2.0", "step": NaN}')
    status, out, _ = ckptspec_validate(broken)
    assert status == EXIT_FAIL and out.startswith("JSON_NONFINITE ")


def test_an_unreadable_manifest_named_on_the_command_line() -> None:
    """/proc/self/mem is a regular file whose first page cannot be read, even by root."""
    if not os.path.exists("/proc/self/mem"):
        pytest.skip("no /proc/self/mem on this system")
    assert_cannot_check(*ckptspec_validate("/proc/self/mem"), "/proc/self/mem", "cannot be read")


@pytest.mark.skipif(
    AS_ROOT,
    reason="root reads a file whatever its mode; the /proc/self/mem test covers unreadable input as root",
)
def test_an_unreadable_manifest_in_a_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "step-000000100"
    shutil.copytree(VALID_CHECKPOINT, checkpoint)
    (checkpoint / "manifest.json").chmod(0)
    assert_cannot_check(
        *ckptspec_validate(checkpoint), str(checkpoint / "manifest.json"), "cannot be read"
    )


@pytest.mark.skipif(AS_ROOT, reason="root reads a file whatever its mode")
def test_an_unreadable_payload_under_deep(tmp_path: Path) -> None:
    checkpoint = tmp_path / "step-000000100"
    shutil.copytree(VALID_CHECKPOINT, checkpoint)
    payload = checkpoint / "model" / "__0_0.distcp"
    payload.chmod(0)
    assert ckptspec_validate(checkpoint)[0] == EXIT_OK, "without --deep the payload is not read"
    assert_cannot_check(*ckptspec_validate(checkpoint, "--deep"), str(payload), "cannot be read")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "manifest.json"
    os.mkfifo(fifo)
    assert_cannot_check(*ckptspec_validate(fifo), str(fifo), "not a regular file")


def test_a_missing_path_names_it(tmp_path: Path) -> None:
    assert_cannot_check(
        *ckptspec_validate(tmp_path / "nowhere"), str(tmp_path / "nowhere"), "no such file"
    )
