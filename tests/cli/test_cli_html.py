"""The HTML reports (issue 24, extra): `python -m ckptspec.html_report` as `make matrix` runs it,
the checked-in docs/matrix.html current, and both pages rendered by a real headless Chromium:
every outcome cell has its colour, every failure its replay command. The browser tests are
skipped where /usr/bin/chromium is missing (Debian package `chromium`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ckptspec.html_report import COLOURS, conformance_html, matrix_html

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ROOT / "docs" / "matrix"
CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium (Debian package `chromium`)"
)

_PROBE = """<script>
const cells = [...document.querySelectorAll('td[data-outcome]')].map(td => [td.dataset.outcome, getComputedStyle(td).backgroundColor]);
const replays = [...document.querySelectorAll('code.replay')].map(c => c.textContent);
const out = document.createElement('pre'); out.id = 'probe'; out.textContent = JSON.stringify({cells, replays});
document.body.appendChild(out);
</script>"""


def _reports() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(REPORTS.glob("*.json"))}


def rendered(page: str, tmp_path: Path) -> dict:
    """What Chromium computed for ``page``: each outcome cell's background colour and the replay commands shown."""
    path = tmp_path / "page.html"
    path.write_text(page.replace("</body>", _PROBE + "</body>"))
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    return json.loads(
        found.group(1)
        .replace("&quot;", '"')
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
    )


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def _replays(reports: dict[str, dict]) -> list[str]:
    return [
        c
        for r in reports.values()
        for row in r["requirements"]
        if row["outcome"] in ("fail", "error", "xfail")
        for c in row["replay"]
    ]


def test_make_matrix_writes_the_checked_in_html_page(tmp_path: Path) -> None:
    out = tmp_path / "matrix.html"
    done = subprocess.run(
        [sys.executable, "-m", "ckptspec.html_report", str(REPORTS), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == (ROOT / "docs" / "matrix.html").read_text() == matrix_html(_reports())


@needs_chromium
def test_the_matrix_page_in_chromium_colours_every_cell_and_shows_every_replay(
    tmp_path: Path,
) -> None:
    reports = _reports()
    seen = rendered((ROOT / "docs" / "matrix.html").read_text(), tmp_path)
    rows = {row["id"] for r in reports.values() for row in r["requirements"]}
    assert len(seen["cells"]) == len(rows) * len(reports)
    assert all(colour == _rgb(COLOURS[outcome]) for outcome, colour in seen["cells"])
    assert len({outcome for outcome, _ in seen["cells"]}) > 2
    assert seen["replays"] == _replays(reports) and seen["replays"]


@needs_chromium
def test_a_run_page_in_chromium(tmp_path: Path) -> None:
    report = json.loads((REPORTS / "lightning.json").read_text())
    seen = rendered(conformance_html(report), tmp_path)
    assert [o for o, _ in seen["cells"]] == [row["outcome"] for row in report["requirements"]]
    assert all(colour == _rgb(COLOURS[outcome]) for outcome, colour in seen["cells"])
    assert seen["replays"] == _replays({"one": report})
