"""Fuzz targets for the two readers of untrusted bytes, run by test_fuzz.py in a subprocess whose
address space and time are capped. Each target is a Hypothesis test: call it to run its search.

- :func:`fuzz_documents`: bytes -> ``parse_document`` -> structure -> cross-field rules (the
  path of ``validate`` for `manifest.json` and `run.json`) never raises, and its text output
  stays one line per finding.
- :func:`fuzz_dcp_metadata`: bytes -> ``unpickle_metadata`` returns DCP ``Metadata`` or raises
  ``UnsafeCheckpointError``, nothing else, and never calls anything outside the allow-list.
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_cases import EXAMPLES

EXAMPLES_PER_TARGET = int(os.environ.get("CKPTSPEC_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES_PER_TARGET,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

SEED_MANIFEST = json.loads(
    (EXAMPLES / "valid" / "checkpoint-world2" / "step-000000100" / "manifest.json").read_text()
)
SEED_RUN_INDEX = json.loads(
    (EXAMPLES / "valid" / "run-complete" / "demo-run" / "run.json").read_text()
)

HOSTILE_SCALARS = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from(
        [
            0,
            -1,
            2**63,
            10**18,
            1e308,
            -0.0,
            True,
            None,
            "",
            "1." + "9" * 5000,
            "\ud800",
            "a\nFILE_MISSING x",
            "\x1b[31m",
            "/etc/passwd",
            "../x",
            "a/" * 600,
        ]
    ),
    st.text(max_size=40),
    st.floats(allow_nan=False, allow_infinity=False),
)
JSON_VALUES = st.recursive(
    HOSTILE_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    seed = json.loads(json.dumps(draw(st.sampled_from([SEED_MANIFEST, SEED_RUN_INDEX]))))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(seed)))
        replacement = draw(JSON_VALUES)
        if not path:
            seed = replacement
            continue
        parent = seed
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = replacement
    text = json.dumps(seed)
    if draw(st.booleans()):  # byte-level damage too: escapes, brackets, truncation
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from(['\\"' * 50, "[" * 100, "\\ud800", "9" * 400, "", "}"]))
            + text[at:]
        )
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(mutated_documents(), st.booleans())
def fuzz_documents(data: bytes, as_run_index: bool) -> None:
    from ckptspec.jsonload import parse_document
    from ckptspec.rules import check_manifest_rules, check_run_index_rules
    from ckptspec.structure import check_manifest, check_run_index

    value, findings = parse_document(data, "doc.json")
    if value is not None:
        check, rules = (
            (check_run_index, check_run_index_rules)
            if as_run_index
            else (check_manifest, check_manifest_rules)
        )
        model, findings = check(value, "doc.json")
        if model is not None:
            findings += rules(model, "doc.json")  # type: ignore[arg-type]
    for f in findings:
        line = f.line()
        assert "\n" not in line and "\x1b" not in line, line
        json.dumps(f.model_dump(mode="json"))


def _seed_pickles() -> list[bytes]:
    from test_safe_dcp import ENUM_BY_VALUE, metadata, storage

    return [metadata(), metadata(ENUM_BY_VALUE), metadata(storage=storage("__0_0.distcp"))]


OPCODES = [bytes([op.code.encode("latin-1")[0]]) for op in __import__("pickletools").opcodes]


@st.composite
def mutated_pickles(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_seed_pickles())))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "opcode"]))
        if action == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(max_size=9))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        else:
            data[at:at] = draw(st.sampled_from(OPCODES)) + draw(st.binary(max_size=4))
    return bytes(data)


@FUZZ
@given(mutated_pickles())
def fuzz_dcp_metadata(data: bytes) -> None:
    from torch.distributed.checkpoint.metadata import Metadata

    from ckptspec.safe_dcp import UnsafeCheckpointError, unpickle_metadata

    try:
        result = unpickle_metadata(data)
    except UnsafeCheckpointError:
        return
    assert isinstance(result, Metadata)
