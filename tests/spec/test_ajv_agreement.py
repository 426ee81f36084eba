"""A third validator, outside Python: ajv (Node.js) agrees with `jsonschema` and pydantic on every
document of every example case that reaches the schema stage.

ajv runs in one Node process per test session (``ajv_validate.mjs``), reads each document file
itself with ``JSON.parse`` and validates it against the shipped schema with the draft that the
schema's ``$schema`` declares. ajv is installed into the project's ``.node/`` by ``make node-deps``
(``make test-core`` runs it when npm is on the PATH); without Node or ajv these tests are skipped,
and say why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from spec_cases import CASES, Case
from test_schema_agreement import both_verdicts, schema_for

from ckptspec.findings import CODES
from ckptspec.jsonload import read_document
from ckptspec.schemas import SCHEMA_DIR

HERE = Path(__file__).resolve().parent
NODE_PREFIX = HERE.parents[1] / ".node"  # `npm install --prefix .node` (make node-deps)
SCRIPT = HERE / "ajv_validate.mjs"

NOT_COMPARED = {
    "invalid/manifest/json-duplicate-key": "JSON.parse keeps the last of two `step` keys, so ajv sees a valid manifest",
    "invalid/manifest/json-encoding": "Node's UTF-8 decoding replaces the invalid byte with U+FFFD, so ajv sees a valid manifest",
    "invalid/manifest/json-integer-digits": "JSON.parse turns the 5000-digit integer into Infinity",
    "invalid/manifest/json-integer-overflow": "JSON.parse turns the 309-digit integer into Infinity",
    "invalid/manifest/json-lone-surrogate": "JavaScript strings are UTF-16 and hold the lone surrogate \\ud800 as it is",
    "invalid/manifest/json-nan": "NaN is not JSON for JSON.parse either (a parse error, not a schema verdict)",
    "invalid/manifest/json-overflow": "JSON.parse turns 1e400 into Infinity",
    "invalid/manifest/json-syntax": "not JSON for JSON.parse either (a parse error, not a schema verdict)",
    "invalid/manifest/json-too-deep": "JSON.parse has no depth limit, so ajv sees a valid manifest",
    "invalid/manifest/json-too-deep-for-parser": "JSON.parse has no depth limit; the document is an array, not a manifest",
    "invalid/manifest/json-bom": "JSON.parse refuses the byte order mark (a parse error, not a schema verdict)",
    "invalid/manifest/json-depth-65": "JSON.parse has no depth limit, so ajv sees a valid manifest",
    "invalid/manifest/json-integer-rounds-to-infinity": "JSON.parse turns 2^1024 - 2^970 into Infinity",
    "invalid/manifest/json-nan-and-duplicate-key": "NaN is not JSON for JSON.parse either (a parse error, not a schema verdict)",
    "invalid/manifest/json-infinity": "Infinity is not JSON for JSON.parse either (a parse error, not a schema verdict)",
    "invalid/manifest/json-negative-infinity": "-Infinity is not JSON for JSON.parse either (a parse error, not a schema verdict)",
    "invalid/manifest/json-encoding-before-syntax": "truncated: not JSON for JSON.parse either (a parse error, not a schema verdict)",
    "invalid/manifest/json-too-deep-before-nan": "NaN is not JSON for JSON.parse either (a parse error, not a schema verdict)",
    "invalid/manifest/json-syntax-before-nan": "not JSON for JSON.parse either (a parse error, not a schema verdict)",
    "invalid/manifest/json-lone-surrogate-and-duplicate-key": "JavaScript strings hold the lone surrogate, and JSON.parse keeps the last `step`",
    "invalid/manifest/run-index-json-syntax": "not JSON for JSON.parse either (a parse error, not a schema verdict)",
}
"""Cases whose document the reader rejects at the *document* stage (MANIFEST-2), before any schema
validator sees it, and why ajv's view of the same bytes is not comparable. None is a structure case."""


def _ajv(requests: list[dict[str, str]]) -> list[dict[str, Any]]:
    """ajv's verdicts for ``requests`` ({"schema": FILE[, "document": FILE]}), from one Node process."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not on the PATH: the ajv agreement test cannot run")
    if not (NODE_PREFIX / "node_modules" / "ajv" / "package.json").is_file():
        pytest.skip(
            f"ajv is not installed in {NODE_PREFIX} (run `make node-deps`, which needs npm)"
        )
    done = subprocess.run(
        [node, str(SCRIPT), str(NODE_PREFIX)],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"ajv_validate.mjs exited {done.returncode}: {done.stderr}"
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(answers) == len(requests)
    return answers


def _compared_documents() -> list[tuple[Case, Path]]:
    return [
        (case, path) for case in CASES if case.id not in NOT_COMPARED for path in case.documents()
    ]


@pytest.fixture(scope="module")
def ajv_verdicts() -> dict[Path, dict[str, Any]]:
    """ajv's verdict on every compared document, and on every shipped schema alone (compiled, strict)."""
    documents = [path for _, path in _compared_documents()]
    schemas = sorted(SCHEMA_DIR.glob("*.schema.json"))
    answers = _ajv(
        [
            {
                "schema": str(SCHEMA_DIR / schema_for(p.name, read_document(str(p))[0])),
                "document": str(p),
            }
            for p in documents
        ]
        + [{"schema": str(s)} for s in schemas]
    )
    return dict(zip(documents + schemas, answers))


def _not_exact_in_javascript(value: Any, pointer: str = "") -> str | None:
    """The JSON pointer of the first integer in ``value`` that a JavaScript number cannot hold exactly."""
    if isinstance(value, dict):
        found = (_not_exact_in_javascript(v, f"{pointer}/{k}") for k, v in value.items())
    elif isinstance(value, list):
        found = (_not_exact_in_javascript(v, f"{pointer}/{i}") for i, v in enumerate(value))
    else:
        exact = not isinstance(value, int) or isinstance(value, bool) or int(float(value)) == value
        return None if exact else pointer
    return next((p for p in found if p is not None), None)


def test_every_shipped_schema_compiles_in_strict_ajv(
    ajv_verdicts: dict[Path, dict[str, Any]],
) -> None:
    schemas = sorted(SCHEMA_DIR.glob("*.schema.json"))
    assert {"manifest.schema.json", "run-index.schema.json"} <= {s.name for s in schemas}
    for schema in schemas:
        assert ajv_verdicts[schema] == {"compiled": True}, schema.name


@pytest.mark.parametrize("case", [c for c in CASES if c.id not in NOT_COMPARED], ids=lambda c: c.id)
def test_ajv_agrees_with_jsonschema_and_pydantic(
    case: Case, ajv_verdicts: dict[Path, dict[str, Any]]
) -> None:
    for path in case.documents():
        value, problems = read_document(str(path))
        assert not problems, (
            f"{path}: the reader rejects it ({problems[0].code}); list the case in NOT_COMPARED, saying why"
        )
        inexact = _not_exact_in_javascript(value)
        assert inexact is None, (
            f"{path}: the integer at {inexact} is not exact as a JavaScript number; list the case in NOT_COMPARED"
        )
        by_pydantic, by_schema = both_verdicts(path.name, value)
        by_ajv = ajv_verdicts[path]
        assert by_ajv.get("valid") == by_schema == by_pydantic, (
            f"{path}: ajv {by_ajv}, jsonschema {by_schema}, pydantic {by_pydantic}"
        )
        if (
            case.spec["codes"]
            and all(CODES[c].stage == "structure" for c in case.spec["codes"])
            and path.name == Path(case.spec["path"]).name
        ):
            assert by_ajv["valid"] is False and by_ajv["errors"], (
                f"{path}: a structure case must be invalid for ajv"
            )


def test_only_document_stage_cases_are_not_compared() -> None:
    by_id = {c.id: c for c in CASES}
    assert set(NOT_COMPARED) <= set(by_id)
    for case_id in NOT_COMPARED:
        case = by_id[case_id]
        assert case.spec["codes"] and all(
            CODES[c].stage == "document" for c in case.spec["codes"]
        ), case_id
        for path in case.documents():
            assert read_document(str(path))[1], (
                f"{path}: the reader accepts it, so ajv must be compared on it"
            )
    structure = [
        c
        for c in CASES
        if c.spec["codes"] and all(CODES[x].stage == "structure" for x in c.spec["codes"])
    ]
    assert structure and not {c.id for c in structure} & set(NOT_COMPARED)
