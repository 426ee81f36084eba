"""``ckptspec schema``: write, or ``--check``, every generated file.

Generated files are the JSON Schemas and registries under ``spec/schemas/`` and the generated
blocks of the ``docs/spec/`` pages. ``--check`` writes nothing and exits 1 naming each stale
file. ``--print NAME`` prints one schema (e.g. ``manifest``, ``validate-output`` or a file name)
from the installed package, writing nothing. The docs are handled only in a source checkout,
where ``docs/spec/`` exists.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ckptspec.exit_codes import EXIT_ERROR, EXIT_FAIL, EXIT_OK


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``schema``."""
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 naming every stale generated file",
    )
    action.add_argument(
        "--print",
        dest="print_name",
        metavar="NAME",
        help="print the schema NAME (e.g. manifest, validate-output); `--print list` names them",
    )


def schema_names() -> list[str]:
    """The names ``--print`` accepts: every JSON file of ``spec/schemas/`` without ``.schema.json`` / ``.json``."""
    from ckptspec.schemas import SCHEMA_DIR

    return sorted(
        p.name.removesuffix(".json").removesuffix(".schema") for p in SCHEMA_DIR.glob("*.json")
    )


def print_schema(name: str) -> int:
    """Print the checked-in schema ``name``; exit 2 with the closest names when there is none."""
    import difflib

    from ckptspec.schemas import SCHEMA_DIR

    names = schema_names()
    if name == "list":
        print("\n".join(names))
        return EXIT_OK
    short = name.removesuffix(".json").removesuffix(".schema")
    if short not in names:
        close = difflib.get_close_matches(short, names, n=3)
        hint = (
            f" (did you mean {' or '.join(close)}?)" if close else f"; schemas: {', '.join(names)}"
        )
        print(f"ckptspec schema: no schema {name!r}{hint}", file=sys.stderr)
        return EXIT_ERROR
    path = next(
        p
        for p in (SCHEMA_DIR / f"{short}.schema.json", SCHEMA_DIR / f"{short}.json")
        if p.is_file()
    )
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return EXIT_OK


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
    """Write, check or print the generated files; return the exit status."""
    if args.print_name is not None:
        return print_schema(args.print_name)
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
