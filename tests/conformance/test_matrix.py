"""The published matrix (docs/matrix.md) is what the stored reports generate, and its cells say
what the reports say."""

from __future__ import annotations

from ckptspec.conformance import matrix


def test_matrix_page_is_current() -> None:
    assert matrix.MATRIX_PAGE.read_text() == matrix.generate(), (
        "run `python -m ckptspec.conformance.matrix`"
    )
    assert matrix.main(["--check"]) == 0


def _report(outcomes: dict[str, str], tests: list[dict]) -> dict:  # type: ignore[type-arg]
    return {
        "adapter": "pkg.mod:Adapter",
        "framework": "acme 1.0",
        "torch_version": "2.13.0+cpu",
        "python_version": "3.11",
        "exit_status": 1,
        "profile": "quick",
        "requirements": [{"id": i, "outcome": o} for i, o in outcomes.items()],
        "tests": tests,
    }


def test_cells_failures_and_bug_reports_come_from_the_reports() -> None:
    failing = {
        "nodeid": "conformance/tests/test_resume.py::test_bit_exact_resume",
        "outcome": "xfailed",
        "requirements": {"RESUME-1": "xfail", "RESUME-4": "pass"},
        "message": "RESUME-1: loss differs\nmore",
        "replay": None,
    }
    label = matrix.TRAINERS[2].label
    page = matrix.render(
        {label: _report({"RESUME-1": "xfail", "RESUME-4": "pass", "LAYOUT-2": "n/a"}, [failing])},
        "## Upstream bug reports\n\nAcme drops the RNG.",
    )
    row = next(line for line in page.splitlines() if line.startswith("| RESUME-1 "))
    assert row.split(" | ")[5] == "fail (known)" and row.split(" | ")[2] == "resume"
    assert (
        next(line for line in page.splitlines() if line.startswith("| LAYOUT-2 ")).split(" | ")[5]
        == "n/a"
    )
    assert "acme 1.0" in page and "(no report)" in page
    assert "`test_bit_exact_resume` (RESUME-1): RESUME-1: loss differs" in page
    assert (
        "--ckptspec-adapter pkg.mod:Adapter --ckptspec-profile quick --ckptspec-derandomize" in page
    )
    assert page.rstrip().endswith("Acme drops the RNG.")


def test_scratch_paths_do_not_make_the_page_unstable() -> None:
    def failing(where: str) -> dict:  # type: ignore[type-arg]
        return {
            "nodeid": "conformance/tests/test_refusals.py::test_integrity_before_mutation",
            "outcome": "failed",
            "requirements": {"RESUME-6": "fail"},
            "replay": None,
            "message": f"RESUME-6: could not load '{where}/out/run/checkpoints/checkpoint_1/pytorch_model.bin'",
        }

    label = matrix.TRAINERS[2].label
    pages = [
        matrix.render({label: _report({"RESUME-6": "fail"}, [failing(where)])})
        for where in (
            "/tmp/pytest-of-root/pytest-84/ckptspec-l23l92z2/fork-10a7e5f8",
            "/home/ci/work/bt/ckptspec-0q9zz1ab/integrity-0badc0de",
        )
    ]
    assert pages[0] == pages[1]
    assert "could not load '<tmp>/out/run/checkpoints/checkpoint_1/pytorch_model.bin'" in pages[0]
