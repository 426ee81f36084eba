"""Conformance reports as self-contained HTML pages: one run (``ckptspec conformance --html``) and
the matrix of every stored report (``make matrix`` writes ``docs/matrix.html``).

Both pages are pure functions of the suite's JSON reports (the documents ``--ckptspec-report``
writes): a table of requirements with each outcome's cell coloured, then every failure with its
message and its replay command. No script, no external resource; every text is HTML-escaped.
``python -m ckptspec.html_report REPORT_DIR OUT`` writes the matrix page of a folder of reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

COLOURS = {
    "pass": "#c8e6c9",
    "fail": "#ffcdd2",
    "error": "#ffab91",
    "xfail": "#ffe0b2",
    "blocked": "#fff59d",
    "n/a": "#eceff1",
    "skipped": "#e0e0e0",
    "not-run": "#f5f5f5",
}
"""The background of an outcome's cell (the outcomes of :mod:`ckptspec.conformance.report`)."""

_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
    "th,td{border:1px solid #999;padding:2px 6px;text-align:left;vertical-align:top}"
    "code,pre{font-family:monospace;white-space:pre-wrap}"
    + "".join(
        f"td.o-{name.replace('/', '')}{{background:{colour}}}" for name, colour in COLOURS.items()
    )
)


def _cell(outcome: str) -> str:
    return f'<td class="o-{escape(outcome.replace("/", ""))}" data-outcome="{escape(outcome)}">{escape(outcome.upper())}</td>'


def _page(title: str, body: list[str]) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n<h1>{escape(title)}</h1>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _failures(name: str, report: Mapping[str, Any]) -> list[str]:
    out = []
    for row in report["requirements"]:
        if row["outcome"] not in ("fail", "error", "xfail"):
            continue
        who = f"{escape(name)}: " if name else ""
        out.append(
            f'<li class="failure" data-requirement="{escape(row["id"])}">{who}<b>{escape(row["id"])}</b> '
            f"{escape(row['outcome'].upper())} {escape(row['title'])}"
        )
        out += [f"<pre>{escape(message)}</pre>" for message in row["messages"]]
        out += [
            f'<div>replay: <code class="replay">{escape(command)}</code></div>'
            for command in row["replay"]
        ]
        out.append("</li>")
    return out


def conformance_html(report: Mapping[str, Any]) -> str:
    """The HTML page of one suite report: its header, one coloured row per requirement, its failures."""
    facts = (
        "adapter",
        "framework",
        "checkpoint_format",
        "profile",
        "suite_version",
        "spec_version",
        "torch_version",
        "duration_s",
        "exit_status",
    )
    body = (
        ["<table><tbody>"]
        + [f"<tr><th>{escape(k)}</th><td>{escape(str(report.get(k, '')))}</td></tr>" for k in facts]
        + ["</tbody></table>"]
    )
    body.append(
        '<h2>Requirements</h2>\n<table id="requirements"><thead><tr><th>Requirement</th><th>Level</th><th>Outcome</th><th>Title</th></tr></thead><tbody>'
    )
    for row in report["requirements"]:
        body.append(
            f"<tr><td>{escape(row['id'])}</td><td>{escape(row['level'])}</td>{_cell(row['outcome'])}<td>{escape(row['title'])}</td></tr>"
        )
    body.append("</tbody></table>")
    failures = _failures("", report)
    body.append(
        '<h2>Failures</h2>\n<ul id="failures">' + "\n".join(failures) + "</ul>"
        if failures
        else "<h2>Failures</h2>\n<p>None.</p>"
    )
    return _page(f"ckptspec conformance: {report.get('adapter', '')}", body)


def matrix_html(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """The HTML matrix of several suite reports (trainer name -> report): requirement x trainer,
    each cell the requirement's outcome for that trainer, then every failure with its replay command."""
    names = sorted(reports)
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        for row in reports[name]["requirements"]:
            rows.setdefault(row["id"], {"row": row, "outcomes": {}})["outcomes"][name] = row[
                "outcome"
            ]
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    body = [
        f'<table id="matrix"><thead><tr><th>Requirement</th><th>Level</th><th>Title</th>{head}</tr></thead><tbody>'
    ]
    for rid, entry in rows.items():
        cells = "".join(_cell(entry["outcomes"].get(n, "not-run")) for n in names)
        body.append(
            f"<tr><td>{escape(rid)}</td><td>{escape(entry['row']['level'])}</td><td>{escape(entry['row']['title'])}</td>{cells}</tr>"
        )
    body.append("</tbody></table>")
    failures = [line for name in names for line in _failures(name, reports[name])]
    body.append(
        '<h2>Failures</h2>\n<ul id="failures">' + "\n".join(failures) + "</ul>"
        if failures
        else "<h2>Failures</h2>\n<p>None.</p>"
    )
    return _page("ckptspec conformance matrix", body)


def main(argv: list[str] | None = None) -> int:
    """Write the matrix page of the reports ``REPORT_DIR/*.json`` to ``OUT``."""
    parser = argparse.ArgumentParser(
        prog="python -m ckptspec.html_report", description=main.__doc__
    )
    parser.add_argument("reports", type=Path, metavar="REPORT_DIR")
    parser.add_argument("out", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    reports = {
        p.stem: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(args.reports.glob("*.json"))
    }
    if not reports:
        print(f"{args.reports}: no *.json reports", file=sys.stderr)
        return 2
    args.out.write_text(matrix_html(reports), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
