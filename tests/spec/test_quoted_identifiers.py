"""Identifiers quoted in prose cannot go stale: every schema `$id`, spec version and file-digest
algorithm named in ``docs/`` and ``spec/examples/README.md`` is one the shipped artefacts define."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ckptspec import SPEC_VERSION
from ckptspec.docgen import DOCS_DIR
from ckptspec.file_digest import ALGORITHMS
from ckptspec.schemas import SCHEMA_DIR

ROOT = DOCS_DIR.parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "spec" / "examples" / "README.md"]
SCHEMA_IDS = {
    json.loads(p.read_text(encoding="utf-8"))["$id"] for p in SCHEMA_DIR.glob("*.schema.json")
}

_URN = re.compile(r"urn:ckptspec:[a-z]+:[0-9]+:[a-z0-9-]+")
_VERSION = re.compile(r"\bversion ([0-9]+\.[0-9]+)\b")
_CURRENT = re.compile(r"(?:describes|specification of [^,\n]*,|spec,) version ([0-9]+\.[0-9]+)")
_HISTORY = re.compile(r"^- \*\*([0-9]+\.[0-9]+)\*\*:", re.MULTILINE)
_FILE_DIGEST = re.compile(r"\b([a-z0-9]+(?:-[0-9]+)?):([0-9a-f]{8,})\b")


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _history() -> list[str]:
    return _HISTORY.findall(_text(DOCS_DIR / "versioning.md"))


def test_the_pages_are_found() -> None:
    assert DOCS_DIR / "README.md" in PAGES and len(PAGES) > 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_schema_ids_are_shipped(page: Path) -> None:
    quoted = set(_URN.findall(_text(page)))
    assert quoted <= SCHEMA_IDS, (
        f"{page}: {sorted(quoted - SCHEMA_IDS)} is the $id of no schema in {SCHEMA_DIR}"
    )


def test_the_history_starts_with_the_current_version() -> None:
    history = _history()
    assert history and history[0] == SPEC_VERSION, history


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_versions_are_in_the_history(page: Path) -> None:
    text = _text(page)
    assert set(_VERSION.findall(text)) <= set(_history()), (
        f"{page}: a version that versioning.md's history does not have"
    )
    for current in _CURRENT.findall(text):
        assert current == SPEC_VERSION, (
            f"{page}: calls {current} the current version; the package writes {SPEC_VERSION}"
        )


def test_the_pages_that_name_the_current_version_do() -> None:
    for page in (
        DOCS_DIR / "README.md",
        DOCS_DIR / "versioning.md",
        ROOT / "spec" / "examples" / "README.md",
    ):
        assert _CURRENT.findall(_text(page)) == [SPEC_VERSION], page


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_file_digests_name_a_defined_algorithm(page: Path) -> None:
    for name, hex_digits in _FILE_DIGEST.findall(_text(page)):
        if name in ALGORITHMS or name in ("sha", "xxh3", "blake", "crc"):
            assert name in ALGORITHMS and len(hex_digits) == ALGORITHMS[name][1], (
                f"{page}: {name}:{hex_digits}"
            )


def test_the_algorithm_table_lists_exactly_the_implemented_algorithms() -> None:
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| ", _text(DOCS_DIR / "digest.md"), re.MULTILINE)
    assert sorted(rows) == sorted(ALGORITHMS)
    for name, (_, digits) in ALGORITHMS.items():
        assert re.search(
            rf"^\| `{re.escape(name)}` \| [^|]+ \| {digits} \|",
            _text(DOCS_DIR / "digest.md"),
            re.MULTILINE,
        ), name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_deep_is_never_described_as_one_algorithm(page: Path) -> None:
    """``--deep`` checks each file with the algorithm its entry names (DIGEST-2), not SHA-256 alone."""
    for line in _text(page).splitlines():
        if re.search(r"`(?:--)?deep`", line):
            alone = ("SHA-256" in line or "SHA256" in line) and not any(
                name in line for name in ALGORITHMS if name != "sha256"
            )
            assert not alone, f"{page}: {line.strip()}"


def test_the_readme_names_the_current_schema_ids() -> None:
    named = re.findall(
        r"`\$id`s are\s+`(urn[^`]+)` and\s+`(urn[^`]+)`", _text(DOCS_DIR / "README.md")
    )
    current = tuple(
        json.loads((SCHEMA_DIR / f).read_text(encoding="utf-8"))["$id"]
        for f in ("manifest.schema.json", "run-index.schema.json")
    )
    assert named == [current]
