"""``ckptspec validate PATH...``: check checkpoints, run directories or manifests against the spec.

Text output is one finding per line (``CODE REQ-ID path: severity: message``) and a summary on
stderr; ``--format json`` prints one JSON document (:class:`ValidateOutput`, schema
``validate-output.schema.json``); ``sarif``, ``junit`` and ``github`` print the same findings in
the formats code scanning, CI test tabs and GitHub annotations read (:mod:`ckptspec.report_formats`).
``--deep`` prints its cost estimate and shows a progress bar on stderr when it is a terminal and
the format is text; it stops at ``--timeout SECONDS`` or on Ctrl-C with one line saying how far it
got (the findings of the paths checked before stay in the report). Exit status: 0 conformant,
1 not conformant, 2 could not check (bad arguments, a path that does not exist or cannot be
read, a check stopped before it finished).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ckptspec import SPEC_VERSION, __version__
from ckptspec.exit_codes import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from ckptspec.findings import Finding, Severity, is_conformant, strict
from ckptspec.validator import CannotCheck, TargetKind, detect, validate_target

if TYPE_CHECKING:
    from ckptspec.deep_progress import Tally

VALIDATE_OUTPUT_VERSION = 1
"""Version of the ``--format json`` output shape; raised whenever a field changes meaning or goes away."""

FORMATS = ("text", "json", "sarif", "junit", "github")


class Target(BaseModel):
    """One path named on the command line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="The path as given.")
    kind: Literal["manifest", "run_index", "checkpoint", "run"] | None = Field(
        description="What it was checked as; null when it could not be."
    )
    checked: bool = Field(description="Whether it could be checked at all.")
    skipped: bool = Field(
        default=False,
        description="A JSON file that is not a ckptspec document, left alone under `--only-documents`.",
    )
    error: str | None = Field(description="Why it could not be checked; null when it was.")


class ValidateOutput(BaseModel):
    """The document ``ckptspec validate --format json`` prints (output version 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    output: Literal["ckptspec-validate"] = Field(description="What this document is.")
    output_version: Literal[1] = Field(description="Version of this output shape.")
    validator: str = Field(description="The tool and its version, e.g. `ckptspec 0.1.0`.")
    spec_version: str = Field(description="The spec version the validator implements.")
    deep: bool = Field(description="Whether every listed file's digest was verified.")
    strict: bool = Field(description="Whether warnings counted as errors.")
    targets: list[Target] = Field(description="Every path named, in order.")
    findings: list[Finding] = Field(description="Every finding, in the order found.")
    counts: dict[Literal["error", "warning"], int] = Field(description="Findings by severity.")
    verdict: Literal["conformant", "not_conformant", "not_checked"] = Field(
        description="Exit status 0, 1 and 2 respectively."
    )


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``validate``."""
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="checkpoint directory, run directory, manifest.json or run.json",
    )
    parser.add_argument(
        "--deep",
        action="store_true",
        help="also verify the digest of every listed file (any algorithm of DIGEST-2)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="with --deep, stop hashing after SECONDS and exit 2, saying how far it got",
    )
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument(
        "--format", choices=FORMATS, default="text", help="output format (default: text)"
    )
    parser.add_argument(
        "--output",
        action="append",
        default=[],
        type=_output_spec,
        metavar="FORMAT:PATH",
        help="also write the findings as FORMAT (json, sarif, junit, github) to PATH, from the same run (repeatable)",
    )
    parser.add_argument(
        "--only-documents",
        action="store_true",
        help="skip a JSON file without a top-level `spec_version` (what the pre-commit hook uses)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of seconds")
    return value


def _output_spec(text: str) -> tuple[str, str]:
    fmt, sep, path = text.partition(":")
    if not sep or fmt not in FORMATS[1:] or not path:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected FORMAT:PATH with FORMAT one of {', '.join(FORMATS[1:])}"
        )
    return fmt, path


def render(document: dict[str, Any], fmt: str) -> str:
    """The JSON document of a run in the machine-readable format ``fmt``."""
    if fmt == "json":
        return json.dumps(document, indent=2) + "\n"
    from ckptspec import report_formats

    if fmt == "sarif":
        return json.dumps(report_formats.sarif(document), indent=2) + "\n"
    return report_formats.junit(document) if fmt == "junit" else report_formats.github(document)


def named_file(path: str) -> str:
    """The file a path named on the command line leads to: the user's own link is followed (a
    link is refused only inside a checkpoint, where it could lead out of it)."""
    return os.path.realpath(path) if os.path.islink(path) else path


def is_spec_document(path: str) -> bool:
    """Whether the JSON file ``path`` is a ckptspec document: an object with a ``spec_version``
    (manifests and run indexes have it; a web app's ``manifest.json`` does not). A file that
    cannot be read or parsed counts as one, so that validating it reports why."""
    try:
        with open(path, "rb") as f:
            document = json.loads(f.read(64 * 1024 * 1024))
    except (OSError, ValueError, RecursionError):
        return True
    return not isinstance(document, dict) or "spec_version" in document


def _counts(findings: list[Finding]) -> dict[Literal["error", "warning"], int]:
    return {
        "error": sum(f.severity is Severity.ERROR for f in findings),
        "warning": sum(f.severity is Severity.WARNING for f in findings),
    }


def check(
    paths: list[str],
    *,
    deep: bool = False,
    strict_mode: bool = False,
    only_documents: bool = False,
    progress: bool = False,
    timeout: float | None = None,
) -> ValidateOutput:
    """Validate every path; the JSON document of the run. Under ``deep``, hashing stops once
    ``timeout`` seconds have passed, or on ``KeyboardInterrupt``: the path being checked and
    those after it are reported as not checked (the error says how far hashing got), the
    findings of the paths before it are kept."""
    findings: list[Finding] = []
    targets: list[Target] = []
    deadline = None if timeout is None else time.monotonic() + timeout
    stopped: str | None = None
    for path in paths:
        if stopped is not None:
            targets.append(
                Target(
                    path=path, kind=None, checked=False, error=f"{path}: not reached ({stopped})"
                )
            )
            continue
        if only_documents and os.path.isfile(path) and not is_spec_document(named_file(path)):
            targets.append(Target(path=path, kind=None, checked=False, skipped=True, error=None))
            continue
        try:
            kind = detect(path)
            target = named_file(path) if kind in ("manifest", "run_index") else path
            if deep and kind in ("checkpoint", "run"):
                found = _deep(target, kind, deadline=deadline, bar=progress, timeout=timeout)
            else:
                found = validate_target(target, kind, deep=deep)
        except CannotCheck as exc:
            targets.append(Target(path=path, kind=None, checked=False, error=str(exc)))
            continue
        except _Stopped as exc:
            stopped = exc.why
            targets.append(Target(path=path, kind=None, checked=False, error=f"{path}: {exc}"))
            continue
        targets.append(Target(path=path, kind=kind, checked=True, error=None))
        findings += strict(found) if strict_mode else found
    unchecked = any(not t.checked and not t.skipped for t in targets)
    status = EXIT_ERROR if unchecked else (EXIT_OK if is_conformant(findings) else EXIT_FAIL)
    verdict = {EXIT_OK: "conformant", EXIT_FAIL: "not_conformant", EXIT_ERROR: "not_checked"}[
        status
    ]
    return ValidateOutput(
        output="ckptspec-validate",
        output_version=VALIDATE_OUTPUT_VERSION,
        validator=f"ckptspec {__version__}",
        spec_version=SPEC_VERSION,
        deep=deep,
        strict=strict_mode,
        targets=targets,
        findings=findings,
        counts=_counts(findings),
        verdict=verdict,  # type: ignore[arg-type]
    )


class _Stopped(Exception):
    """Hashing stopped before it finished: ``why`` and how far it got."""

    def __init__(self, why: str, progress: str) -> None:
        super().__init__(f"stopped {why}: {progress}")
        self.why = why


def _deep(
    target: str, kind: TargetKind, *, deadline: float | None, bar: bool, timeout: float | None
) -> list[Finding]:
    from ckptspec.deep_progress import DeepTimeout, listed_tally, watched_hashing

    tally: Tally | None = None
    try:
        tally = listed_tally(target, kind, deadline)
        with watched_hashing(target, tally, bar=bar):
            return validate_target(target, kind, deep=True)
    except DeepTimeout:
        raise _Stopped(f"at --timeout {timeout:g} s", _how_far(tally)) from None
    except KeyboardInterrupt:
        raise _Stopped("by an interrupt", _how_far(tally)) from None


def _how_far(tally: Tally | None) -> str:
    return tally.progress() if tally is not None else "before hashing started"


EXIT_STATUS = {"conformant": EXIT_OK, "not_conformant": EXIT_FAIL, "not_checked": EXIT_ERROR}


def run(args: argparse.Namespace) -> int:
    """Validate every path; print the findings; return the exit status."""
    progress = args.format == "text" and sys.stderr.isatty()
    result = check(
        args.paths,
        deep=args.deep,
        strict_mode=args.strict,
        only_documents=args.only_documents,
        progress=progress,
        timeout=args.timeout,
    )
    document = result.model_dump(mode="json")
    for fmt, path in args.output:
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(render(document, fmt))
        except OSError as exc:
            print(f"ckptspec validate: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_ERROR
    if args.format == "text":
        sys.stdout.writelines(f.line() + "\n" for f in result.findings)
        for t in result.targets:
            if not t.checked and not t.skipped:
                print(f"ckptspec validate: cannot check {t.error}", file=sys.stderr)
        checked = sum(not t.skipped for t in result.targets)
        summary = f"{checked} path(s): {result.counts['error']} error(s), {result.counts['warning']} warning(s): {result.verdict.replace('_', ' ')}"
        print(summary, file=sys.stderr)
        return EXIT_STATUS[result.verdict]
    sys.stdout.write(render(document, args.format))
    return EXIT_STATUS[result.verdict]
