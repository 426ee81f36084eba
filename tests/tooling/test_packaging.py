"""The built wheel on its own (no torch; with torch), the GitHub Action's steps and the pre-commit hook.

Everything runs from copies outside the repository: a clean source tree (tracked and
untracked-but-not-ignored files), the wheel built from it, fresh virtual environments.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ACTION_SCRIPT = "scripts/action_validate.sh"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
ENV.pop("PYTHONPATH", None)
ENV.pop("VIRTUAL_ENV", None)

pytestmark = pytest.mark.slow


def _run(
    cmd: list[str], cwd: Path, timeout: float = 600, env: dict[str, str] = ENV
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(cmd: list[str], cwd: Path, timeout: float = 600) -> str:
    done = _run(cmd, cwd, timeout)
    assert done.returncode == 0, (
        f"{cmd} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed git clone of the working tree as it is now (what a user's `rev:` would fetch)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    tree = tmp_path_factory.mktemp("src") / "ckptspec"
    for name in filter(None, listed.stdout.decode().split("\0")):
        source, copy = REPO / name, tree / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            copy.symlink_to(os.readlink(source))
        elif source.is_file():
            shutil.copy2(source, copy)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "snapshot"],
    ):
        _ok(cmd, tree)
    return tree


@pytest.fixture(scope="module")
def wheel(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _ok(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source_tree)],
        source_tree,
    )
    (built,) = out.glob("ckptspec-*.whl")
    return built


def _venv(path: Path) -> Path:
    _ok([sys.executable, "-m", "venv", str(path)], path.parent)
    return path / "bin"


def _installed(bin_dir: Path) -> set[str]:
    listed = json.loads(
        _ok([str(bin_dir / "python"), "-m", "pip", "list", "--format", "json"], bin_dir)
    )
    return {p["name"].lower() for p in listed}


def _case_target(case: Path) -> Path:
    return case / json.loads((case / "case.json").read_text())["path"]


def _symlink_cases(examples: Path) -> set[str]:
    """Cases that hold a symbolic link: a wheel cannot carry links, so it ships them unfaithfully."""
    return {
        case.parent.relative_to(examples).as_posix()
        for case in examples.rglob("case.json")
        if any(p.is_symlink() for p in case.parent.rglob("*"))
    }


def _case_verdicts(examples: Path, leave_out: set[str]) -> dict[Path, dict]:
    cases = {}
    for case in sorted(examples.rglob("case.json")):
        spec = json.loads(case.read_text())
        if (
            "materialize" not in spec
            and case.parent.relative_to(examples).as_posix() not in leave_out
        ):
            cases[case.parent / spec["path"]] = spec
    return cases


def test_the_action_and_the_wheel_work_without_torch(
    wheel: Path, source_tree: Path, tmp_path: Path
) -> None:
    # The action's own steps: install the wheel into a fresh venv, validate, write report and outputs.
    outputs = tmp_path / "github_output"
    valid = _case_target(source_tree / "spec/examples/valid/checkpoint-world2")
    invalid = _case_target(source_tree / "spec/examples/invalid/layout/file-digest-mismatch")
    env = {
        **ENV,
        "CKPTSPEC_INSTALL": str(wheel),
        "CKPTSPEC_VENV": str(tmp_path / "venv"),
        "CKPTSPEC_DEEP": "true",
        "CKPTSPEC_PATHS": f"{valid}\n{invalid}",
        "CKPTSPEC_REPORT": str(tmp_path / "findings.json"),
        "GITHUB_OUTPUT": str(outputs),
    }
    done = _run(["bash", str(source_tree / ACTION_SCRIPT)], tmp_path, env=env)
    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "findings.json").read_text())
    assert report["deep"] is True and report["verdict"] == "not_conformant"
    assert {f["code"] for f in report["findings"]} >= set(
        json.loads((invalid.parent / "case.json").read_text())["codes"]
    )
    assert "verdict=not_conformant\nexit-code=1\n" in outputs.read_text()

    bin_dir = tmp_path / "venv" / "bin"
    assert "torch" not in _installed(bin_dir) and not any(
        n.startswith("nvidia") for n in _installed(bin_dir)
    )
    where = _ok(
        [
            str(bin_dir / "python"),
            "-c",
            "import ckptspec, pathlib; print(pathlib.Path(ckptspec.__file__).parent)",
        ],
        tmp_path,
    )
    package = Path(where.strip())
    assert REPO not in package.parents and source_tree not in package.parents
    linked = _symlink_cases(source_tree / "spec/examples")
    assert "valid/run-complete" in linked  # the copy kept the repository's links
    cases = _case_verdicts(package / "examples", leave_out=linked)
    assert len(cases) >= 50
    for target, spec in cases.items():
        cmd = [str(bin_dir / "ckptspec"), "validate", "--format", "json", str(target)] + (
            ["--deep"] if spec.get("deep") else []
        )
        document = json.loads(_run(cmd, tmp_path).stdout)
        assert document["verdict"] == spec["verdict"], target
        assert set(spec["codes"]) <= {f["code"] for f in document["findings"]}, target
    summary = _ok(
        [
            str(bin_dir / "ckptspec"),
            "inspect",
            str(_case_target(package / "examples/valid/checkpoint-world2")),
        ],
        tmp_path,
    )
    assert "model" in summary
    _ok([str(bin_dir / "ckptspec"), "schema", "--check"], tmp_path)
    (package / "schemas" / "manifest.schema.json").write_text("{}\n")
    assert (
        _run([str(bin_dir / "ckptspec"), "schema", "--check"], tmp_path).returncode == 1
    )  # it does compare


def test_the_wheel_with_torch_runs_the_conformance_suite(wheel: Path, tmp_path: Path) -> None:
    bin_dir = _venv(tmp_path / "venv")
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "-q"]
    constraints = ["-c", str(REPO / "constraints.txt")]
    _ok(pip + constraints + ["torch"], tmp_path)
    _ok(
        pip + constraints + [f"{wheel}[conformance]"], tmp_path
    )  # the README's command: the extra brings what the suite needs
    installed = _installed(bin_dir)
    assert "torch" in installed and not any(n.startswith("nvidia") for n in installed)
    out = _ok(
        [
            str(bin_dir / "python"),
            "-m",
            "pytest",
            "--pyargs",
            "ckptspec.conformance.tests",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-k",
            "test_checkpoints_validate",
            "--basetemp",
            str(tmp_path / "bt"),
        ],
        tmp_path,
        timeout=900,
    )
    assert " passed" in out and " failed" not in out


def test_the_pre_commit_hook_passes_a_valid_manifest_and_fails_an_invalid_one(
    source_tree: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "user-repo"
    repo.mkdir()
    _ok(["git", "init", "-q"], repo)
    examples = source_tree / "spec/examples"
    shutil.copy(examples / "valid/manifest-weights-only/manifest.json", repo / "manifest.json")
    (repo / "bad").mkdir()
    shutil.copy(
        examples / "invalid/manifest/schema-negative-size/manifest.json", repo / "bad/manifest.json"
    )
    shutil.copy(
        examples / "invalid/manifest/schema-negative-size/manifest.json",
        repo / "not-a-manifest.json",
    )
    (
        repo / "web"
    ).mkdir()  # a web app's manifest: a JSON file of that name that is no ckptspec document
    (repo / "web/manifest.json").write_text('{"name": "My App", "start_url": "/", "icons": []}')
    rev = _ok(["git", "rev-parse", "HEAD"], source_tree).strip()
    (
        repo / ".pre-commit-config.yaml"
    ).write_text(  # the README's snippet, with this clone as the hook repository
        f"repos:\n  - repo: {source_tree}\n    rev: {rev}\n    hooks:\n      - id: ckptspec-validate\n"
    )
    _ok(["git", "add", "-A"], repo)
    env = {**ENV, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    run_hook = [sys.executable, "-m", "pre_commit", "run", "ckptspec-validate", "--files"]

    good = _run(
        run_hook + ["manifest.json", "not-a-manifest.json", "web/manifest.json"], repo, env=env
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Passed" in good.stdout

    bad = _run(run_hook + ["bad/manifest.json"], repo, env=env)
    assert bad.returncode == 1 and "Failed" in bad.stdout
    code = json.loads((examples / "invalid/manifest/schema-negative-size/case.json").read_text())[
        "codes"
    ][0]
    assert code in bad.stdout and "bad/manifest.json" in bad.stdout
    (hook_env,) = (tmp_path / "pre-commit-home").glob("repo*/py_env-*")
    assert "torch" not in _installed(hook_env / "bin")
