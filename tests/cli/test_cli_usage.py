"""Item 8 of issue 24 (the command line): "did you mean" for a misspelt command, option or choice,
the subcommand's own usage on a usage error, and shell completion scripts that the shells accept."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from ckptspec.cli import COMMANDS


def ckptspec(*argv: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ckptspec", *argv], capture_output=True, text=True, timeout=120, **kw
    )


def test_a_misspelt_command_gets_a_suggestion_and_exit_2() -> None:
    done = ckptspec("valdate", "x")
    assert (
        done.returncode == 2 and "unknown command 'valdate' (did you mean validate?)" in done.stderr
    )


def test_a_bad_option_prints_the_subcommands_usage_and_the_closest_option() -> None:
    done = ckptspec("validate", "--dep", "x")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: ckptspec validate ")
    assert (
        "ckptspec validate: error: unrecognized arguments: --dep (did you mean --deep?)"
        in done.stderr
    )


def test_a_bad_choice_gets_the_closest_choice() -> None:
    done = ckptspec("diff", "a", "b", "--format", "jsn")
    assert (
        done.returncode == 2
        and done.stderr.startswith("usage: ckptspec diff ")
        and "(did you mean json?)" in done.stderr
    )


def test_no_command_prints_help_and_exits_2() -> None:
    done = ckptspec()
    assert done.returncode == 2 and all(name in done.stderr for name in COMMANDS)


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_the_front_commands_import_neither_pydantic_nor_torch(argv: list[str]) -> None:
    # start-up: what `ckptspec --help` costs is the interpreter plus argparse, nothing heavier
    code = (
        "import sys\nfrom ckptspec.cli import main\ncode = main(sys.argv[1:])\n"
        "heavy = sorted({'pydantic', 'torch', 'jsonschema'} & set(sys.modules))\n"
        "print('heavy:', heavy, file=sys.stderr)\nsys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stderr


def test_bash_completion_completes_commands_and_options(tmp_path) -> None:
    script = ckptspec("completion", "bash").stdout
    probe = tmp_path / "probe.sh"
    probe.write_text(
        script
        + """
COMP_WORDS=(ckptspec val); COMP_CWORD=1; _ckptspec; echo "${COMPREPLY[@]}"
COMP_WORDS=(ckptspec validate --de); COMP_CWORD=2; _ckptspec; echo "${COMPREPLY[@]}"
COMP_WORDS=(ckptspec diff --for); COMP_CWORD=2; _ckptspec; echo "${COMPREPLY[@]}"
"""
    )
    done = subprocess.run(["bash", str(probe)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["validate", "--deep", "--format"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion_loads_in_zsh(tmp_path) -> None:
    (tmp_path / "_ckptspec").write_text(ckptspec("completion", "zsh").stdout)
    done = subprocess.run(
        [
            "zsh",
            "-f",
            "-c",
            f"autoload -U compinit && compinit -u && source {tmp_path}/_ckptspec && whence -w _ckptspec",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "function" in done.stdout, done.stderr
