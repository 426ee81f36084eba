"""The conformance suite's self-test: every mutant is caught by its declared requirement.

Cheap checks (no processes): each mutant is the reference with exactly one overridden method,
declares requirements that exist and that the conformance suite verifies, and the committed
catch matrix in ``docs/catch-matrix.md`` and ``docs/conformance.md`` is the one generated from the registry.

The slow check runs the catch matrix's fast form once per session (shared by xdist workers
through a lock file) and asserts, per mutant, that the suite failed one of its declared
requirements, and that the clean reference passed every requirement the mutants rely on.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import catch_matrix
import mutants
import pytest

from ckptspec.reference_impl.adapter import ReferenceAdapter
from ckptspec.reference_impl.trainer import Trainer
from ckptspec.requirements import BY_ID

REPO = Path(__file__).resolve().parents[2]
DOCS = (REPO / "docs" / "catch-matrix.md", REPO / "docs" / "conformance.md")
CPU_MUTANTS = [m for m in mutants.MUTANTS if not m.gpu_only]

KNOWN_MISSES: dict[str, str] = {}
"""Mutants the suite does not catch yet, with the suite change that would catch them (docs/catch-matrix.md).

Each is a strict xfail: once the suite catches the mutant, the test fails until it is removed here.
"""


def _methods(cls: type) -> list[str]:
    """Callables defined in ``cls`` itself (dunders excluded)."""
    return [
        k
        for k, v in vars(cls).items()
        if callable(v) and not isinstance(v, type) and not k.startswith("__")
    ]


def _attributes(cls: type) -> set[str]:
    return {k for k in vars(cls) if not k.startswith("__")}


def overridden(adapter: type) -> list[str]:
    """Every method the mutant adapter changes relative to the reference, as ``Class.method``.

    Raises ``AssertionError`` if the mutant changes anything other than methods of one trainer
    subclass, or one collaborator class selected by that subclass.
    """
    assert issubclass(adapter, ReferenceAdapter) and adapter.__bases__ == (ReferenceAdapter,)
    assert _attributes(adapter) == {"trainer_class"}, _attributes(adapter)
    trainer = adapter.trainer_class
    assert trainer.__bases__ == (Trainer,), trainer.__bases__
    changed = [f"{trainer.__name__}.{m}" for m in _methods(trainer)]
    switches = _attributes(trainer) - set(_methods(trainer))
    assert switches <= set(mutants.COLLABORATORS.values()), switches
    for base, attribute in mutants.COLLABORATORS.items():
        if attribute in switches:
            collaborator = vars(trainer)[attribute]
            assert collaborator.__bases__ == (base,), collaborator.__bases__
            assert _attributes(collaborator) == set(_methods(collaborator)), _attributes(
                collaborator
            )
            changed += [f"{collaborator.__name__}.{m}" for m in _methods(collaborator)]
    return changed


@pytest.mark.parametrize("m", mutants.MUTANTS, ids=lambda m: m.name)
def test_mutant_overrides_exactly_one_method(m: mutants.Mutant) -> None:
    assert overridden(mutants.adapter_class(m)) == [m.broken]


@pytest.mark.parametrize("m", mutants.MUTANTS, ids=lambda m: m.name)
def test_declared_requirements_exist_and_are_verified_by_the_suite(m: mutants.Mutant) -> None:
    assert m.caught_by and len(set(m.caught_by)) == len(m.caught_by)
    for requirement in m.caught_by:
        assert requirement in BY_ID, f"{m.name}: unknown requirement {requirement}"
        assert "conformance" in BY_ID[requirement].verified_by, (
            f"{m.name}: {requirement} is not checked by the suite"
        )


def test_registry_is_well_formed() -> None:
    names = [m.name for m in mutants.MUTANTS]
    assert len(names) == len(set(names))
    assert len(CPU_MUTANTS) >= 15
    assert set(KNOWN_MISSES) <= set(names)
    from ckptspec.conformance.adapter import load_adapter

    for m in mutants.MUTANTS:
        assert load_adapter(m.import_string) is mutants.adapter_class(m)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_committed_catch_matrix_is_generated(doc: Path) -> None:
    text = doc.read_text()
    assert catch_matrix.DOC_BEGIN in text and catch_matrix.DOC_END in text, (
        f"{doc} lacks the generated-block markers"
    )
    committed = text.split(catch_matrix.DOC_BEGIN, 1)[1].split(catch_matrix.DOC_END, 1)[0].strip()
    assert committed == catch_matrix.markdown_table(mutants.MUTANTS).strip(), (
        f"{doc.relative_to(REPO)} is stale: paste the output of `python tests/mutants/catch_matrix.py --markdown`"
    )


# --- the fast form (slow: about 20 suite runs) ---------------------------------------------
@pytest.fixture(scope="session")
def fast_matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Per target label: the requirement outcomes and exit statuses of the fast form, run once per
    session even under xdist (the first worker runs it, the others wait on the lock and read it)."""
    base = tmp_path_factory.getbasetemp()
    shared = (
        base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    )  # this session's, never an older one's
    result = shared / "ckptspec-catch-matrix.json"
    with open(shared / "ckptspec-catch-matrix.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            workdir = Path(tempfile.mkdtemp(prefix="catch-", dir=shared))
            outcomes = catch_matrix.run_all(catch_matrix.plan(CPU_MUTANTS, full=False), workdir)
            result.write_text(
                json.dumps(
                    {
                        label: {
                            "requirements": o.requirements,
                            "exit_status": o.exit_status,
                            "returncode": o.returncode,
                            "tail": o.tail[-2000:],
                        }
                        for label, o in outcomes.items()
                    }
                )
            )
    return json.loads(result.read_text())


def _outcome(data: dict[str, Any], label: str) -> catch_matrix.Outcome:
    target = catch_matrix.Target(label, "", None)
    return catch_matrix.Outcome(
        target, data["returncode"], 0.0, data["requirements"], data["exit_status"], data["tail"]
    )


@pytest.mark.slow
@pytest.mark.catch_matrix
def test_clean_reference_passes(fast_matrix: dict[str, Any]) -> None:
    expected = {r for m in CPU_MUTANTS for r in m.caught_by}
    problems = catch_matrix.clean_problems(
        _outcome(fast_matrix[catch_matrix.CLEAN], catch_matrix.CLEAN), expected
    )
    assert not problems, problems


@pytest.mark.slow
@pytest.mark.catch_matrix
@pytest.mark.parametrize(
    "m",
    [
        pytest.param(
            m,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[m.name])]
            if m.name in KNOWN_MISSES
            else [],
        )
        for m in CPU_MUTANTS
    ],
    ids=lambda m: m.name,
)
def test_mutant_is_caught_by_its_requirement(
    fast_matrix: dict[str, Any], m: mutants.Mutant
) -> None:
    outcome = _outcome(fast_matrix[m.name], m.name)
    assert catch_matrix.is_caught(m.caught_by, outcome), (
        f"{m.name} ({m.bug}) must fail {', '.join(m.caught_by)}; the suite reported "
        f"{ {r: o for r, o in outcome.requirements.items() if o not in ('pass', 'not-run')} }\n{outcome.tail}"
    )
