"""``ckptspec diff`` on paths it cannot compare: exit status 2 and a message, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptspec.cli import main


def test_diff_cannot_compare_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", str(tmp_path / "missing"), str(tmp_path)]) == 2
    (tmp_path / "a").mkdir()
    assert main(["diff", str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "cannot compare" in err and "Traceback" not in err
