"""Item 5 of issue 25: `validate --deep` stops cleanly at `--timeout` and on Ctrl-C (exit 2, one
line naming how far it got, no traceback, earlier paths' findings kept), and prints its cost
estimate before it starts, on a terminal only."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from test_cli_progress import EXAMPLE, on_a_terminal

from ckptspec.exit_codes import EXIT_ERROR


def _big_checkpoint(root: Path, mib_per_file: int) -> Path:
    """The example checkpoint with its two model shards grown to sparse files of zeros listed
    with SHA-256 digests (slow enough to hash that a short timeout or a signal lands first)."""
    directory = root / EXAMPLE.name
    shutil.copytree(EXAMPLE, directory)
    size = mib_per_file * 1024 * 1024
    digest = hashlib.sha256(bytes(size)).hexdigest()
    manifest = json.loads((directory / "manifest.json").read_text())
    for component in manifest["components"]:
        for entry in component["files"]:
            if entry["path"].endswith(".distcp") and component["name"] == "model":
                with open(directory / entry["path"], "wb") as f:
                    f.truncate(size)
                entry["size"], entry["digest"] = size, f"sha256:{digest}"
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return directory


def _validate(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ckptspec", "validate", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_timeout_stops_with_exit_2_and_one_line_naming_how_far(tmp_path: Path) -> None:
    big = _big_checkpoint(tmp_path, 64)
    done = _validate("--deep", "--timeout", "0.01", str(big))
    assert done.returncode == EXIT_ERROR and done.stdout == "", done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    stop = [line for line in lines if "stopped at --timeout 0.01 s" in line]
    assert len(stop) == 1 and "of 12 files" in stop[0] and "of 128.0 MiB" in stop[0], lines
    assert lines[-1].endswith("not checked")


def test_timeout_keeps_findings_of_paths_checked_before(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(EXAMPLE, broken / EXAMPLE.name)
    (broken / EXAMPLE.name / "trainer.json").write_text('{"changed": true}      ')
    big = _big_checkpoint(tmp_path, 64)
    done = _validate(
        "--deep", "--timeout", "0.05", "--format", "json", str(broken / EXAMPLE.name), str(big)
    )
    document = json.loads(done.stdout)
    assert done.returncode == EXIT_ERROR and document["verdict"] == "not_checked"
    assert [t["checked"] for t in document["targets"]] == [True, False]
    assert "stopped at --timeout 0.05 s: hashed" in document["targets"][1]["error"]
    assert any(f["path"].endswith("trainer.json") for f in document["findings"]), document


def test_a_timeout_not_reached_changes_nothing() -> None:
    done = _validate("--deep", "--timeout", "300", str(EXAMPLE))
    assert done.returncode == 0 and done.stderr.count("\n") == 1, done.stderr


def test_timeout_must_be_a_positive_number() -> None:
    for bad in ("0", "-1", "soon", "nan"):
        done = _validate("--deep", "--timeout", bad, str(EXAMPLE))
        assert done.returncode == EXIT_ERROR and "positive number of seconds" in done.stderr


def test_ctrl_c_stops_with_exit_2_and_how_far_after_the_estimate(tmp_path: Path) -> None:
    # 4 GiB to hash (about 12 s here): the signal goes out when the estimate shows, and on a
    # loaded machine the reader may see that line late; 1 GiB once finished hashing first.
    big = _big_checkpoint(tmp_path, 2048)
    status, _, shown = on_a_terminal("validate", "--deep", str(big), interrupt_when=b"at least")
    assert status == EXIT_ERROR and "Traceback" not in shown, shown
    estimate = shown.index("--deep will hash 4.0 GiB in 12 file(s) (")
    assert "sha256 at " in shown and "xxh3-128 at " in shown
    assert "stopped by an interrupt: hashed " in shown, repr(shown)
    stop = shown.index("stopped by an interrupt: hashed ")
    assert estimate < stop and "of 4.0 GiB)" in shown[stop:], shown


def test_no_estimate_off_a_terminal() -> None:
    done = _validate("--deep", str(EXAMPLE))
    assert done.returncode == 0 and "will hash" not in done.stderr
