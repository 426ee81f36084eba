"""The ``ckptspec`` command: one entry point, one module per subcommand.

Each subcommand module defines ``configure(parser)`` and ``run(args) -> int`` and is imported
only when its subcommand runs, so ``ckptspec validate`` never pays for importing torch.
Exit codes: 0 success / conformant, 1 not conformant / different, 2 could not check.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from collections.abc import Sequence
from typing import Optional

from ckptspec import SPEC_VERSION, __version__
from ckptspec.exit_codes import EXIT_ERROR

COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("ckptspec.validate_cmd", "check checkpoints, run directories or manifests against the spec"),
    "inspect": ("ckptspec.inspect_cmd", "summarise a checkpoint or run directory (or a plain DCP / HF directory)"),
    "schema": ("ckptspec.schema_cmd", "write, or --check, the generated JSON Schemas"),
    "diff": ("ckptspec.diff_cmd", "compare two checkpoints tensor by tensor with the canonical digest"),
    "conformance": ("ckptspec.conformance.cli", "run the conformance suite against a trainer adapter"),
    "demo": ("ckptspec.reference_impl.demo", "train, kill, resume and verify the reference trainer"),
    "export": ("ckptspec.reference_impl.export", "write a checkpoint's model weights as safetensors with a weights-only manifest"),
}

def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s module is imported to configure its options."""
    parser = argparse.ArgumentParser(prog="ckptspec", description="Specification tools for distributed training checkpoints.")
    parser.add_argument("--version", action="version", version=f"ckptspec {__version__} (spec {SPEC_VERSION})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).configure(sp)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns (and, as a script, exits with) the command's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # file names need not be valid UTF-8; printing them must not fail
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help/--version exit 0
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args))
    except KeyboardInterrupt:
        print("ckptspec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `ckptspec validate ... | head`: the reader is gone, not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
