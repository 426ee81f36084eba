"""Loading the language-neutral example cases of ``spec/examples`` for the tests, and the marker of
the few spec tests that need torch (the spec tests also run on interpreters without it)."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import ckptspec

EXAMPLES = Path(ckptspec.__file__).resolve().parent / "examples"

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="needs torch, which this interpreter's session does not install (the torch-free tier)",
)
"""For the spec tests that read or write real DCP directories (``diff``, ``inspect``)."""


@dataclass(frozen=True)
class Case:
    kind: str  # "valid", "invalid" or "not-checked"
    name: str  # the case's path below its kind: "<case>", or "<section>/<case>" for an invalid case
    directory: Path
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.kind}/{self.name}"

    def target(self, scratch: Path) -> Path:
        """The path to validate; a case with ``materialize`` is built under ``scratch`` first."""
        recipe = self.spec.get("materialize")
        if recipe is None:
            return self.directory / self.spec["path"]
        path = scratch / recipe["file"]
        with open(path, "wb") as f:
            f.write(recipe["prefix"].encode())
            f.write(recipe["pad"].encode() * (recipe["size"] - len(recipe["prefix"])))
        return path

    def documents(self) -> list[Path]:
        """Every manifest.json and run.json in the case (not inside `.rewound`), but for symbolic
        links (`read_document` refuses a link; its target is not named like a document)."""
        found = []
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = [d for d in dirs if d != ".rewound"]
            found += [
                Path(root) / f
                for f in files
                if f in ("manifest.json", "run.json") and not (Path(root) / f).is_symlink()
            ]
        return sorted(found)


def load_cases() -> list[Case]:
    """Every case: each directory below ``spec/examples`` that holds a ``case.json``."""
    cases = []
    for case_file in sorted(EXAMPLES.rglob("case.json")):
        kind, *name = case_file.parent.relative_to(EXAMPLES).parts
        spec = json.loads(case_file.read_text(encoding="utf-8"))
        cases.append(Case(kind, "/".join(name), case_file.parent, spec))
    return cases


def case(case_id: str) -> Case:
    """The case of ``case_id`` (``kind/name``)."""
    return next(c for c in CASES if c.id == case_id)


CASES = load_cases()
