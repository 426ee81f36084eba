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
    kind: str  # "valid" or "invalid"
    name: str
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
        """Every manifest.json and run.json in the case (not inside `.rewound`)."""
        found = []
        for root, dirs, files in os.walk(self.directory):
            dirs[:] = [d for d in dirs if d != ".rewound"]
            found += [Path(root) / f for f in files if f in ("manifest.json", "run.json")]
        return sorted(found)


def load_cases() -> list[Case]:
    cases = []
    for kind in ("valid", "invalid"):
        for entry in sorted((EXAMPLES / kind).iterdir()):
            spec = json.loads((entry / "case.json").read_text(encoding="utf-8"))
            cases.append(Case(kind, entry.name, entry, spec))
    return cases


CASES = load_cases()
