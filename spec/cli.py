"""The ``ckptspec`` command: one entry point, one module per subcommand.

Each subcommand module defines ``configure(parser)`` and ``run(args) -> int`` and is imported
only when its subcommand runs, so ``ckptspec validate`` never pays for importing torch. A
subcommand that needs torch or pytest says so in one line, with the command that installs it,
before it starts. Usage errors print the subcommand's own usage and, for a misspelt command,
option or choice, the closest correct one.
Exit codes: 0 success / conformant, 1 not conformant / different, 2 could not check.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import os
import re
import sys
from collections.abc import Sequence
from typing import NamedTuple, NoReturn

from ckptspec import SPEC_VERSION, __version__
from ckptspec.exit_codes import EXIT_ERROR


class Command(NamedTuple):
    """A subcommand: its module, its one-line help and the optional modules it cannot run without."""

    module: str
    help: str
    needs: tuple[str, ...] = ()
    extra: str = ""


COMMANDS: dict[str, Command] = {
    "validate": Command(
        "ckptspec.validate_cmd", "check checkpoints, run directories or manifests against the spec"
    ),
    "inspect": Command(
        "ckptspec.inspect_cmd",
        "summarise a checkpoint or run directory (or a plain DCP / HF directory)",
    ),
    "schema": Command(
        "ckptspec.schema_cmd", "write, --check or --print the generated JSON Schemas"
    ),
    "diff": Command(
        "ckptspec.diff_cmd",
        "compare two checkpoints (or an export and its source) tensor by tensor",
        ("torch",),
        "reference",
    ),
    "conformance": Command(
        "ckptspec.conformance.cli",
        "run the conformance suite against a trainer adapter",
        ("torch", "numpy", "pytest", "hypothesis"),
        "conformance",
    ),
    "demo": Command(
        "ckptspec.reference_impl.demo",
        "train, kill, resume and verify the reference trainer",
        ("torch", "numpy"),
        "reference",
    ),
    "export": Command(
        "ckptspec.reference_impl.export",
        "write a checkpoint's model weights as safetensors with a weights-only manifest",
        ("torch", "numpy", "safetensors"),
        "reference",
    ),
    "completion": Command(
        "ckptspec.completion_cmd", "print a shell completion script (bash or zsh)"
    ),
}

INSTALL_HINTS: dict[str, str] = {
    "reference": "pip install torch 'ckptspec[reference]'",
    "conformance": "pip install torch 'ckptspec[conformance]'",
}
"""The exact command that installs what each extra's commands need (torch is never a dependency
of the package: see pyproject.toml)."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(name: str) -> list[str]:
    """The modules subcommand ``name`` needs that are not installed (found without importing them)."""
    return [m for m in COMMANDS[name].needs if not _installed(m)]


def needs_message(name: str, missing: Sequence[str]) -> str:
    """The one line that says subcommand ``name`` cannot run without ``missing`` and how to install them."""
    extra = COMMANDS[name].extra or "reference"
    return f"ckptspec {name}: needs {', '.join(missing)}, not installed here; install with: {INSTALL_HINTS[extra]}"


def _suggestion(message: str, parser: argparse.ArgumentParser) -> str:
    """' (did you mean ...?)' for an unrecognised option or an invalid choice in argparse's ``message``."""
    import difflib

    choice = re.search(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)", message)
    if choice:
        options = [c.strip(" '\"") for c in choice.group(2).split(",")]
        close = difflib.get_close_matches(choice.group(1), options, n=1)
    else:
        unknown = re.search(r"unrecognized arguments: (.*)", message)
        words = (
            [w.split("=")[0] for w in unknown.group(1).split() if w.startswith("-")]
            if unknown
            else []
        )
        close = [
            m
            for w in words
            for m in difflib.get_close_matches(w, list(parser._option_string_actions), n=1)
        ]
    return f" (did you mean {' or '.join(close)}?)" if close else ""


class Parser(argparse.ArgumentParser):
    """argparse's parser with its own usage on error and the closest correct spelling."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}{_suggestion(message, self)}\n")


def command_parser(name: str) -> Parser:
    """The parser of subcommand ``name`` (imports its module to configure its options)."""
    parser = Parser(prog=f"ckptspec {name}", description=COMMANDS[name].help)
    importlib.import_module(COMMANDS[name].module).configure(parser)
    return parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s module is imported to configure its options."""
    parser = Parser(
        prog="ckptspec", description="Specification tools for distributed training checkpoints."
    )
    parser.add_argument(
        "--version", action="version", version=f"ckptspec {__version__} (spec {SPEC_VERSION})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, spec in COMMANDS.items():
        sp = sub.add_parser(name, help=spec.help, description=spec.help)
        if name == command:
            importlib.import_module(spec.module).configure(sp)
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    """The parsed command line; argparse's ``SystemExit`` for usage errors, ``--help`` and ``--version``."""
    if argv and argv[0] in COMMANDS:
        args = command_parser(argv[0]).parse_args(argv[1:])
        args.command = argv[0]
        return args
    parser = build_parser()
    if argv and not argv[0].startswith("-"):
        import difflib

        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        parser.error(
            f"unknown command {argv[0]!r}"
            + (f" (did you mean {close[0]}?)" if close else f"; commands: {', '.join(COMMANDS)}")
        )
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        raise SystemExit(EXIT_ERROR)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and, as a script, exits with) the command's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (
        sys.stdout,
        sys.stderr,
    ):  # file names need not be valid UTF-8; printing them must not fail
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    if argv and argv[0] in COMMANDS and not {"-h", "--help"} & set(argv):
        missing = missing_modules(argv[0])
        if missing:
            print(needs_message(argv[0], missing), file=sys.stderr)
            return EXIT_ERROR
    try:
        args = _parse(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help/--version exit 0
        return int(exc.code or 0)
    try:
        return int(importlib.import_module(COMMANDS[args.command].module).run(args))
    except KeyboardInterrupt:
        print("ckptspec: interrupted", file=sys.stderr)
        return 130
    except (
        BrokenPipeError
    ):  # e.g. `ckptspec validate ... | head`: the reader is gone, not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except ModuleNotFoundError as exc:  # an optional module that the check above could not foresee
        root = (exc.name or "").split(".")[0]
        if root not in {"torch", "numpy", "pytest", "hypothesis", "safetensors", "xdist"}:
            raise
        print(needs_message(args.command, [root]), file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
