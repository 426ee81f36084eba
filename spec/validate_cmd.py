"""``ckptspec validate PATH...``: check checkpoints, run directories or manifests against the spec.

Text output is one finding per line (``CODE REQ-ID path: severity: message``) and a summary on
stderr; ``--format json`` prints one JSON document. Exit status: 0 conformant, 1 not
conformant, 2 could not check (bad arguments, a path that does not exist or cannot be read).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ckptspec import SPEC_VERSION, __version__
from ckptspec.exit_codes import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from ckptspec.findings import Finding, Severity, is_conformant, strict
from ckptspec.validator import CannotCheck, detect, validate_target


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``validate``."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="checkpoint directory, run directory, manifest.json or run.json")
    parser.add_argument("--deep", action="store_true", help="also verify the digest of every listed file (any algorithm of DIGEST-2)")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


def named_file(path: str) -> str:
    """The file a path named on the command line leads to: the user's own link is followed (a
    link is refused only inside a checkpoint, where it could lead out of it)."""
    return os.path.realpath(path) if os.path.islink(path) else path


def _counts(findings: list[Finding]) -> dict[str, int]:
    return {s.value: sum(1 for f in findings if f.severity is s) for s in Severity}


def run(args: argparse.Namespace) -> int:
    """Validate every path; print the findings; return the exit status."""
    findings: list[Finding] = []
    targets: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in args.paths:
        try:
            kind = detect(path)
            found = validate_target(named_file(path) if kind in ("manifest", "run_index") else path, kind, deep=args.deep)
        except CannotCheck as exc:
            problems.append(str(exc))
            targets.append({"path": path, "kind": None, "checked": False, "error": str(exc)})
            continue
        targets.append({"path": path, "kind": kind, "checked": True, "error": None})
        findings += strict(found) if args.strict else found
    status = EXIT_ERROR if problems else (EXIT_OK if is_conformant(findings) else EXIT_FAIL)
    verdict = {EXIT_OK: "conformant", EXIT_FAIL: "not_conformant", EXIT_ERROR: "not_checked"}[status]
    counts = _counts(findings)
    if args.format == "json":
        document = {
            "validator": f"ckptspec {__version__}",
            "spec_version": SPEC_VERSION,
            "deep": args.deep,
            "strict": args.strict,
            "targets": targets,
            "findings": [f.model_dump(mode="json") for f in findings],
            "counts": counts,
            "verdict": verdict,
        }
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.writelines(f.line() + "\n" for f in findings)
        for problem in problems:
            print(f"ckptspec validate: cannot check {problem}", file=sys.stderr)
        summary = f"{len(args.paths)} path(s): {counts['error']} error(s), {counts['warning']} warning(s): {verdict.replace('_', ' ')}"
        print(summary, file=sys.stderr)
    return status
