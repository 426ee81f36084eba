"""Property tests: generated manifests round-trip through JSON unchanged and get one verdict from
pydantic and jsonschema; every single-field mutation of a valid manifest yields findings and
never an exception."""

from __future__ import annotations

import copy
import json
from typing import Any, get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel
from spec_cases import CASES

from ckptspec import SPEC_VERSION
from ckptspec.documents import load_manifest
from ckptspec.file_digest import ALGORITHMS
from ckptspec.jsonload import parse_document
from ckptspec.manifest import Component, Manifest
from ckptspec.rules import check_manifest_rules, check_run_index_rules
from ckptspec.run_index import BestRecord, RunIndex
from ckptspec.schemas import load_schema
from ckptspec.structure import check_manifest

SCHEMA = Draft202012Validator(load_schema("manifest.schema.json"))
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ident = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,12}\Z")
sha = st.from_regex(r"\A[0-9a-f]{64}\Z")
segment = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}\Z")
rel_path = st.lists(segment, min_size=1, max_size=3).map("/".join)
count = st.integers(0, 2**40)
positive = st.integers(1, 64)
finite = st.floats(allow_nan=False, allow_infinity=False)
timestamp = st.from_regex(
    r"\A20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z\Z"
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | finite | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def choices(model: type[BaseModel], field: str) -> st.SearchStrategy[str]:
    """The values the model's ``Literal`` field admits (never a copy of the list)."""
    return st.sampled_from(get_args(model.model_fields[field].annotation))


file_digest = st.sampled_from(sorted(ALGORITHMS)).flatmap(
    lambda name: st.text(
        "0123456789abcdef", min_size=ALGORITHMS[name][1], max_size=ALGORITHMS[name][1]
    ).map(lambda hex_: f"{name}:{hex_}")
)
file_entry = st.fixed_dictionaries(
    {
        "path": rel_path,
        "size": count,
        "digest": file_digest,
        "ranks": st.lists(st.integers(0, 63), min_size=1, max_size=3),
    },
    optional={"group": st.integers(0, 8)},
)
component = st.fixed_dictionaries(
    {
        "name": ident,
        "kind": choices(Component, "kind"),
        "sharing": choices(Component, "sharing"),
        "format": choices(Component, "format"),
        "reshardable": st.booleans(),
        "files": st.lists(file_entry, min_size=1, max_size=3),
    },
    optional={
        "group_size": st.one_of(st.none(), positive),
        "step_count": st.one_of(st.none(), count),
        "extensions": st.dictionaries(ident, json_value, max_size=2),
    },
)
manifests = st.fixed_dictionaries(
    {
        "spec_version": st.just(SPEC_VERSION),
        "producer": st.fixed_dictionaries(
            {"name": st.text(min_size=1, max_size=16), "version": st.text(min_size=1, max_size=8)},
            optional={"torch_version": st.one_of(st.none(), st.text(max_size=8))},
        ),
        "run_id": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z"),
        "step": count,
        "created_at": timestamp,
        "topology": st.fixed_dictionaries(
            {
                "world_size": positive,
                "device_type": ident,
                "mesh": st.lists(
                    st.fixed_dictionaries({"name": ident, "size": positive}), min_size=1, max_size=3
                ),
            },
            optional={"backend": st.one_of(st.none(), ident)},
        ),
        "progress": st.fixed_dictionaries(
            {
                "global_step": count,
                "epoch": count,
                "batches_in_epoch": count,
                "samples_in_epoch": count,
                "samples_seen": count,
                "accumulation_steps": positive,
            }
        ),
        "config": st.fixed_dictionaries(
            {"values": st.dictionaries(st.text(max_size=10), json_value, max_size=5), "sha256": sha}
        ),
        "components": st.lists(component, min_size=1, max_size=4),
        "resumable": st.booleans(),
    },
    optional={
        "replication": st.lists(
            st.fixed_dictionaries(
                {
                    "component": ident,
                    "digests": st.lists(
                        st.fixed_dictionaries({"rank": st.integers(0, 63), "sha256": sha}),
                        min_size=1,
                        max_size=3,
                    ),
                }
            ),
            max_size=2,
        ),
        "eval": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "metrics": st.dictionaries(
                        st.text(min_size=1, max_size=8), finite, min_size=1, max_size=3
                    ),
                    "samples": positive,
                }
            ),
        ),
        "resumed_from": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {"step": count, "world_size": positive, "elastic": st.booleans()},
                optional={"rederived": st.lists(ident, max_size=2)},
            ),
        ),
        "extensions": st.dictionaries(st.text(max_size=10), json_value, max_size=3),
    },
)


@SETTINGS
@given(manifests)
def test_generated_manifests_round_trip_and_get_one_verdict(document: dict[str, Any]) -> None:
    value, problems = parse_document(json.dumps(document).encode(), "m.json")
    assert not problems and value == document
    model = Manifest.model_validate(value)
    assert model.model_dump(mode="json", exclude_unset=True) == document
    assert SCHEMA.is_valid(value)
    check_manifest_rules(model, "m.json")  # rules never raise on a structurally valid model


BASE: dict[str, Any] = json.loads(
    (next(c for c in CASES if c.name == "manifest-world2").directory / "manifest.json").read_text()
)


def _locations(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    found = [prefix] if prefix else []
    for key, child in children:
        found += _locations(child, prefix + (key,))
    return found


LOCATIONS = _locations(BASE)
REPLACEMENTS: dict[str, Any] = {
    "bool": True,
    "number": 1.5,
    "string": "x",
    "array": [1],
    "object": {"k": 1},
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


def _findings(document: Any) -> list[Any]:
    return _check_bytes(json.dumps(document).encode())


def _check_bytes(data: bytes) -> list[Any]:
    value, findings = parse_document(data, "m.json")
    if findings:
        return findings
    model, findings = check_manifest(value, "m.json")
    return findings + (check_manifest_rules(model, "m.json") if model is not None else [])


def _set(document: Any, location: tuple[Any, ...], value: Any) -> Any:
    mutated = copy.deepcopy(document)
    node = mutated
    for key in location[:-1]:
        node = node[key]
    node[location[-1]] = value
    return mutated


@SETTINGS
@given(st.sampled_from(LOCATIONS), st.sampled_from(sorted(REPLACEMENTS)))
def test_every_type_changing_mutation_yields_findings(location: tuple[Any, ...], kind: str) -> None:
    node: Any = BASE
    for key in location:
        node = node[key]
    if _kind(node) == kind:
        kind = "object" if kind != "object" else "string"
    assert _findings(_set(BASE, location, REPLACEMENTS[kind])), location


@SETTINGS
@given(st.sampled_from(LOCATIONS), json_value)
def test_any_single_field_mutation_never_raises(location: tuple[Any, ...], value: Any) -> None:
    _findings(_set(BASE, location, value))


@SETTINGS
@given(st.binary(max_size=64), st.integers(0, 10_000))
def test_corrupted_bytes_never_raise(junk: bytes, offset: int) -> None:
    text = json.dumps(BASE).encode()
    offset %= len(text)
    _check_bytes(text[:offset] + junk + text[offset + len(junk) :])


def test_the_base_manifest_is_clean(tmp_path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(BASE))
    assert load_manifest(str(path))[1] == []


run_indexes = st.fixed_dictionaries(
    {
        "spec_version": st.just("1.0"),
        "run_id": st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z"),
        "latest_step": st.one_of(st.none(), count),
        "retention": st.fixed_dictionaries(
            {}, optional={"keep_last": st.one_of(st.none(), positive)}
        ),
        "updated_at": timestamp,
    },
    optional={
        "best": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "metric": st.text(min_size=1, max_size=8),
                    "mode": choices(BestRecord, "mode"),
                    "min_delta": st.floats(0, 1e6),
                },
                optional={
                    "step": st.one_of(st.none(), count),
                    "score": st.one_of(st.none(), finite),
                },
            ),
        ),
        "rewinds": st.lists(
            st.fixed_dictionaries(
                {
                    "fork_id": ident,
                    "at": timestamp,
                    "resumed_from_step": count,
                    "discarded_steps": st.lists(count, min_size=1, max_size=3),
                    "moved_to": rel_path,
                }
            ),
            max_size=2,
        ),
        "extensions": st.dictionaries(st.text(max_size=10), json_value, max_size=2),
    },
)
RUN_SCHEMA = Draft202012Validator(load_schema("run-index.schema.json"))


@SETTINGS
@given(run_indexes)
def test_generated_run_indexes_round_trip_and_get_one_verdict(document: dict[str, Any]) -> None:
    value, problems = parse_document(json.dumps(document).encode(), "run.json")
    assert not problems and value == document
    index = RunIndex.model_validate(value)
    assert index.model_dump(mode="json", exclude_unset=True) == document
    assert RUN_SCHEMA.is_valid(value)
    check_run_index_rules(index, "run.json")
