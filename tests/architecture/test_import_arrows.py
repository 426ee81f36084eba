"""The packages import one way: spec <- checkpoint library <- reference trainer; the suite drives
adapters, and nothing imports the suite but adapters (see docs/architecture.md).

Read statically (every ``import`` statement, at any depth), so a lazy import inside a function
counts too. ``ckptspec.cli`` is the composition root: it names its subcommands' modules as
strings and imports only the one that runs, so it is not an import of them here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"spec": "ckptspec", "reference_impl": "ckptspec.reference_impl", "conformance": "ckptspec.conformance"}
SUITE, TRAINER, LIBRARY = "ckptspec.conformance", "ckptspec.reference_impl", "ckptspec.checkpointing"
ADAPTERS = {"reference_impl/adapter.py"}  # the reference trainer's adapter implements the suite's protocol


def _modules() -> list[Path]:
    return sorted(p for folder in PACKAGES for p in (REPO / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_run_one_way(path: Path) -> None:
    rel = str(path.relative_to(REPO))
    imported = {m for m in _imports(path) if _under(m, "ckptspec")}
    if rel.startswith("spec/checkpointing/"):
        forbidden = [m for m in imported if _under(m, SUITE) or _under(m, TRAINER)]
    elif rel.startswith("spec/"):
        forbidden = [m for m in imported if _under(m, SUITE) or _under(m, TRAINER) or _under(m, LIBRARY)]
    elif rel.startswith("reference_impl/") and rel not in ADAPTERS:
        forbidden = [m for m in imported if _under(m, SUITE)]
    else:
        forbidden = []
    assert not forbidden, f"{rel} imports {sorted(forbidden)} against the arrows of docs/architecture.md"


def test_nothing_but_adapters_imports_the_suite() -> None:
    importers = {str(p.relative_to(REPO)) for p in _modules() if any(_under(m, SUITE) for m in _imports(p))}
    outside = {p for p in importers if not p.startswith("conformance/")} - ADAPTERS
    assert not outside, f"modules outside the suite that import it: {sorted(outside)}"
