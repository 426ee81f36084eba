"""``ckptspec schema``: write, or ``--check``, every generated file.

Generated files are the JSON Schemas and registries under ``spec/schemas/`` and the generated
blocks of the ``docs/spec/`` pages. ``--check`` writes nothing and exits 1 naming each stale
file. The docs are handled only in a source checkout, where ``docs/spec/`` exists.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ckptspec.exit_codes import EXIT_ERROR, EXIT_FAIL, EXIT_OK


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``schema``."""
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 naming every stale generated file")


def expected_files() -> dict[Path, str]:
    """Every generated file by path, with the content it must have.

    Raises ``ValueError`` when a docs page lacks a generated block, ``OSError`` when one cannot be read.
    """
    from ckptspec import docgen, schemas

    files = {schemas.SCHEMA_DIR / name: text for name, text in schemas.generated_files().items()}
    if docgen.DOCS_DIR.is_dir():
        for page in docgen.PAGES:
            path = docgen.DOCS_DIR / page
            files[path] = docgen.refresh(page, path.read_text(encoding="utf-8"))
    return files


def _current(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def run(args: argparse.Namespace) -> int:
    """Write or check the generated files; return the exit status."""
    try:
        files = expected_files()
    except (ValueError, OSError) as exc:
        print(f"ckptspec schema: {exc}", file=sys.stderr)
        return EXIT_ERROR
    stale = [path for path, text in files.items() if _current(path) != text]
    if args.check:
        for path in stale:
            print(f"stale: {path} (run `ckptspec schema` to regenerate)", file=sys.stderr)
        return EXIT_FAIL if stale else EXIT_OK
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path}")
    return EXIT_OK
