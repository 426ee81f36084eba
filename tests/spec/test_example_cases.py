"""The example cases of spec/examples: every case gives exactly its expected codes and verdict,
every registered code is exercised, the cases are grouped by spec section, and the data is
self-consistent."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from spec_cases import CASES, EXAMPLES, Case
from test_schema_agreement import both_verdicts

from ckptspec import requirements
from ckptspec.example_cases import ExampleCase
from ckptspec.findings import CODES, CannotCheck, Severity, is_conformant, strict
from ckptspec.jsonload import read_document
from ckptspec.schemas import load_schema
from ckptspec.validator import validate_path


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_gives_its_codes_and_verdict(case: Case, tmp_path) -> None:
    if case.spec["verdict"] == "not_checked":
        with pytest.raises(CannotCheck):
            validate_path(case.target(tmp_path), deep=case.spec["deep"])
        return
    findings = validate_path(case.target(tmp_path), deep=case.spec["deep"])
    assert sorted({f.code for f in findings}) == case.spec["codes"], [f.line() for f in findings]
    verdict = "conformant" if is_conformant(findings) else "not_conformant"
    assert verdict == case.spec["verdict"]
    for f in findings:
        assert f.requirement == CODES[f.code].requirement
        assert f.severity is CODES[f.code].severity


CASE_SCHEMA = Draft202012Validator(load_schema("example-case.schema.json"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_file_is_checked_data(case: Case) -> None:
    """``case.json`` validates against the published schema and the model, and is consistent:
    sorted unique known codes, all of one requirement, which the case names."""
    errors = [e.message for e in CASE_SCHEMA.iter_errors(case.spec)]
    assert not errors, errors
    spec = ExampleCase.model_validate(case.spec)
    assert spec.codes == sorted(set(spec.codes)) and set(spec.codes) <= set(CODES)
    assert spec.other_requirements == sorted(set(spec.other_requirements))
    if case.kind == "valid":
        assert spec.codes == [] and spec.verdict == "conformant" and spec.requirement is None
        assert spec.other_requirements == []
    elif case.kind == "not-checked":
        assert spec.codes == [] and spec.verdict == "not_checked" and spec.requirement is None
        assert spec.other_requirements == []
    else:
        assert spec.codes, "an invalid case names the code(s) it must produce"
        assert spec.verdict != "not_checked"
        assert spec.requirement not in spec.other_requirements
        # every code it expects belongs to a requirement it names, and every one it names has a code
        assert {CODES[c].requirement for c in spec.codes} == {
            spec.requirement,
            *spec.other_requirements,
        }


def test_cases_are_grouped_by_spec_section() -> None:
    """``valid/<case>``, ``not-checked/<case>``, ``invalid/<section>/<case>`` where the section is
    the one that defines the requirement the case breaks; nothing else holds a case."""
    assert {c.kind for c in CASES} == {"valid", "invalid", "not-checked"}
    for case in CASES:
        parts = case.name.split("/")
        if case.kind == "invalid":
            assert (
                len(parts) == 2
                and parts[0] == requirements.get(case.spec["requirement"]).section.value
            ), case.id
        else:
            assert len(parts) == 1, case.id
    assert {p.name for p in EXAMPLES.iterdir() if p.is_dir()} == {"valid", "invalid", "not-checked"}


def test_case_schema_rejects_a_malformed_case() -> None:
    good = CASES[0].spec
    for bad in (
        {**good, "verdict": "maybe"},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "requirement"},
        {**good, "requirement": "resume-1"},
        {**good, "path": "../outside"},
        {**good, "other_requirements": ["manifest-8"]},
    ):
        assert not CASE_SCHEMA.is_valid(bad), bad


def test_every_code_has_an_invalid_case() -> None:
    covered = {code for case in CASES if case.kind == "invalid" for code in case.spec["codes"]}
    assert set(CODES) - covered == set()
    assert sum(1 for c in CASES if c.kind == "invalid") >= 20


def test_warning_cases_fail_under_strict(tmp_path) -> None:
    warned = [c for c in CASES if c.kind == "invalid" and c.spec["verdict"] == "conformant"]
    assert warned
    for case in warned:
        findings = validate_path(case.target(tmp_path), deep=True)
        assert all(f.severity is Severity.WARNING for f in findings)
        assert not is_conformant(strict(findings))


def test_only_document_and_structure_cases_hold_schema_invalid_documents() -> None:
    """spec/examples/README.md: every document of a valid case, and of a case whose codes are all
    of stages rule, files or run, is valid for pydantic and the JSON Schema."""
    checked = 0
    for case in CASES:
        stages = {CODES[c].stage for c in case.spec["codes"]}
        if case.kind == "not-checked" or stages & {"document", "structure"}:
            continue
        for path in case.documents():
            value, problems = read_document(str(path))
            assert not problems, path
            assert both_verdicts(path.name, value) == (True, True), path
            checked += 1
    assert checked > len(CASES) // 2
