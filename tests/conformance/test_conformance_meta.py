"""Meta-tests of the conformance suite: requirement coverage and marker hygiene (no processes)."""

from __future__ import annotations

import ast
import importlib.resources
from pathlib import Path

from ckptspec.requirements import BY_ID, REQUIREMENTS


def _suite_tests() -> dict[str, list[str]]:
    """``{test name: requirement IDs}`` read statically from the suite's modules."""
    root = Path(str(importlib.resources.files("ckptspec.conformance.tests")))
    validated = [r.id for r in REQUIREMENTS if "validator" in r.verified_by]
    tests: dict[str, list[str]] = {}
    for path in sorted(root.glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            ids: list[str] = []
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith(
                    "mark.requirement"
                ):
                    for arg in deco.args:
                        if isinstance(arg, ast.Constant):
                            ids.append(arg.value)
                        elif isinstance(arg, ast.Starred) and ast.unparse(arg.value) == "VALIDATED":
                            ids.extend(validated)
            tests[f"{path.stem}::{node.name}"] = ids
    return tests


def test_every_test_names_existing_requirements() -> None:
    tests = _suite_tests()
    assert tests, "no conformance tests found"
    for name, ids in tests.items():
        assert ids, f"{name} has no requirement marker"
        unknown = [i for i in ids if i not in BY_ID]
        assert not unknown, f"{name} names unknown requirements {unknown}"


def test_every_requirement_has_a_conformance_test() -> None:
    covered = {i for ids in _suite_tests().values() for i in ids}
    missing = [r.id for r in REQUIREMENTS if r.id not in covered]
    assert not missing, f"requirements without a conformance test that names them: {missing}"
