"""Generated files cannot drift: schemas, registries and docs tables match the code, JSON
examples in the docs validate, and the digest test vectors match ckptspec.digest."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ckptspec import docgen, schemas
from ckptspec.cli import main
from ckptspec.digest import (
    canonical_json,
    canonical_json_v1,
    json_digest,
    json_digest_v1,
    raw_tensor_digest,
)
from ckptspec.file_digest import ALGORITHMS, algorithm_of, digest_bytes
from ckptspec.jsonload import parse_document
from ckptspec.rules import check_manifest_rules, check_run_index_rules
from ckptspec.structure import check_manifest, check_run_index

JSON_BLOCK = re.compile(r"(?:<!-- example: ([a-z-]+) -->\n)?```json\n(.*?)```", re.DOTALL)


def test_schema_check_passes_on_the_checkout(capsys) -> None:
    assert main(["schema", "--check"]) == 0, capsys.readouterr().err


def test_schema_check_names_stale_files_and_schema_rewrites_them(
    tmp_path, monkeypatch, capsys
) -> None:
    schema_dir, docs_dir = tmp_path / "schemas", tmp_path / "docs"
    shutil.copytree(schemas.SCHEMA_DIR, schema_dir)
    shutil.copytree(docgen.DOCS_DIR, docs_dir)
    monkeypatch.setattr(schemas, "SCHEMA_DIR", schema_dir)
    monkeypatch.setattr(docgen, "DOCS_DIR", docs_dir)
    (schema_dir / "manifest.schema.json").write_text("{}\n")
    layout = docs_dir / "layout.md"
    layout.write_text(layout.read_text().replace("</a>LAYOUT-1 ", "</a>LAYOUT-X ", 1))
    assert main(["schema", "--check"]) == 1
    err = capsys.readouterr().err
    assert (
        "manifest.schema.json" in err and "layout.md" in err and "run-index.schema.json" not in err
    )
    assert main(["schema"]) == 0
    assert main(["schema", "--check"]) == 0


def test_generated_json_is_sorted_indented_and_newline_terminated() -> None:
    for path in schemas.SCHEMA_DIR.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert text == schemas.render(json.loads(text)), path


def test_a_page_without_its_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="requirements layout"):
        docgen.refresh("layout.md", "# Layout\n")


def _blocks() -> list[tuple[Path, str, str]]:
    found = []
    for page in sorted(docgen.DOCS_DIR.glob("*.md")):
        for marker, body in JSON_BLOCK.findall(page.read_text(encoding="utf-8")):
            found.append((page, marker, body))
    return found


def test_every_json_block_in_the_docs_names_what_it_is() -> None:
    blocks = _blocks()
    kinds = {
        "manifest",
        "run-index",
        "digest-vectors",
        "legacy-json-digest-vectors",
        "file-digest-vectors",
    }
    assert {m for _, m, _ in blocks} >= kinds
    assert all(marker in kinds for _, marker, _ in blocks), [(str(p), m) for p, m, _ in blocks]


@pytest.mark.parametrize(
    "page, marker, body",
    [b for b in _blocks() if b[1] in ("manifest", "run-index")],
    ids=lambda v: getattr(v, "name", ""),
)
def test_document_examples_in_the_docs_are_valid(page: Path, marker: str, body: str) -> None:
    value, findings = parse_document(body.encode(), str(page))
    assert not findings
    if marker == "manifest":
        model, findings = check_manifest(value, str(page))
        assert model is not None and not findings + check_manifest_rules(model, str(page))
    else:
        index, findings = check_run_index(value, str(page))
        assert index is not None and not findings + check_run_index_rules(index, str(page))


def test_file_digest_test_vectors() -> None:
    vectors = [json.loads(body) for _, marker, body in _blocks() if marker == "file-digest-vectors"]
    assert len(vectors) == 1
    for v in vectors[0]:
        assert sorted(algorithm_of(d) for d in v["digests"]) == sorted(ALGORITHMS)
        for expected in v["digests"]:
            assert digest_bytes(bytes.fromhex(v["data_hex"]), algorithm_of(expected)) == expected


def test_digest_test_vectors() -> None:
    vectors = [json.loads(body) for _, marker, body in _blocks() if marker == "digest-vectors"]
    assert len(vectors) == 1 and len(vectors[0]) >= 8
    for v in vectors[0]:
        if v["kind"] == "json":
            assert canonical_json(v["value"]).decode() == v["canonical"]
            assert json_digest(v["value"]) == v["sha256"]
        else:
            assert (
                raw_tensor_digest(v["dtype"], v["shape"], bytes.fromhex(v["data_hex"]))
                == v["sha256"]
            )


def test_json_digest_vectors_cover_what_other_languages_get_wrong() -> None:
    """Floats, integers beyond 2^53, escapes and non-ASCII keys (sorted by UTF-16 code units)."""
    (vectors,) = [json.loads(body) for _, marker, body in _blocks() if marker == "digest-vectors"]
    canonical = [v["canonical"] for v in vectors if v["kind"] == "json"]
    assert "[1,2.5,1e+21,1e-7,0,5e-324,1.7976931348623157e+308]" in canonical
    assert "[9007199254740991,9007199254740992,1152921504606847000]" in canonical
    assert any("\\u0000" in c and "\\u001f" in c and "\u2028" in c for c in canonical)
    assert any(c.index("\U0001f600") < c.index("\ufb01") for c in canonical if "\ufb01" in c)


def test_version_1_json_digest_vectors() -> None:
    (vectors,) = [
        json.loads(body) for _, marker, body in _blocks() if marker == "legacy-json-digest-vectors"
    ]
    assert len(vectors) >= 4
    for v in vectors:
        assert canonical_json_v1(v["value"]).decode() == v["canonical"]
        assert json_digest_v1(v["value"]) == v["sha256"]
        assert json_digest(v["value"]) != v["sha256"]  # the header alone tells the two forms apart
