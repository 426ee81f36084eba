"""docs/spec/validating.md is pinned rule by rule: every paragraph and list item of the page holds
a rule of RULES, and every rule names the example cases that pin it, a test where no case can
(a FIFO, an unreadable file, several paths on one command line), or says it is deliberately
implementation-defined. So is every guess issue 23 logged."""

from __future__ import annotations

import re
from pathlib import Path

from spec_cases import CASES

VALIDATING = Path(__file__).resolve().parents[2] / "docs" / "spec" / "validating.md"
TESTS = Path(__file__).resolve().parent
IMPLEMENTATION_DEFINED = "implementation-defined"

RULES: list[tuple[str, tuple[str, ...]]] = [
    (
        "reports, for every example case of `spec/examples/`, exactly the case's codes and verdict",
        ("test:test_case_runner.py::test_ckptspec_validate_passes_every_case",),
    ),
    (
        "What is normative is which codes are reported and which are not",
        ("test:test_example_cases.py::test_case_gives_its_codes_and_verdict",),
    ),
    (
        "the number of findings with one code, their order, their messages and their JSON Pointers are implementation-defined",
        (IMPLEMENTATION_DEFINED,),
    ),
    (
        "A validator answers one of three verdicts for a target",
        ("valid/run-complete", "invalid/layout/file-missing", "not-checked/path-missing"),
    ),
    (
        "`conformant`: no finding is an error (warnings may be present; under `--strict` every warning counts as an error)",
        (
            "invalid/layout/unlisted-file",
            "invalid/run/retention-exceeded",
            "test:test_example_cases.py::test_warning_cases_fail_under_strict",
        ),
    ),
    ("`not_conformant`: at least one finding is an error", ("invalid/manifest/step-mismatch",)),
    (
        "`not_checked`: the target could not be checked at all",
        ("not-checked/json-array", "not-checked/parent-of-run"),
    ),
    (
        "`ckptspec validate` exits 0, 1 and 2 for these",
        ("test:test_case_runner.py::test_ckptspec_validate_passes_every_case",),
    ),
    (
        "with several paths, any `not_checked` target makes the exit status 2",
        ("test:test_validate_cli.py::test_nonexistent_path_next_to_a_valid_one_still_exits_2",),
    ),
    (
        "A path names one of four targets",
        (
            "valid/checkpoint-world2",
            "valid/run-complete",
            "valid/manifest-world2",
            "valid/run-index-named-otherwise",
        ),
    ),
    (
        "The path does not exist, or cannot be examined (`stat` fails): `not_checked`, naming the path",
        ("not-checked/path-missing",),
    ),
    ("A symbolic link named by the user is followed", ("valid/checkpoint-through-link",)),
    (
        "The path is neither a regular file nor a directory",
        ("test:test_target_detection.py::test_a_fifo_is_refused_without_blocking",),
    ),
    (
        "A file that cannot be read is `not_checked`, naming it",
        ("test:test_target_detection.py::test_an_unreadable_manifest_named_on_the_command_line",),
    ),
    (
        "if its bytes fail the document stage (below)",
        (
            "invalid/manifest/json-syntax",
            "invalid/manifest/run-index-json-syntax",
            "not-checked/json-syntax-other-name",
        ),
    ),
    (
        "if its value is not a JSON object, the same",
        (
            "invalid/manifest/json-string-named-manifest",
            "invalid/run/run-index-not-object",
            "not-checked/json-array",
        ),
    ),
    (
        "an object with a `spec_version` member is a manifest if it has a `components` member, a run index if it has a `latest_step` member, and otherwise is decided by its name as above",
        (
            "valid/manifest-named-otherwise",
            "valid/run-index-named-otherwise",
            "invalid/manifest/spec-version-only",
            "not-checked/validator-report",
        ),
    ),
    (
        "an object without `spec_version` is a manifest only if its name is `manifest.json`",
        (
            "invalid/manifest/manifest-without-spec-version",
            "invalid/run/run-index-without-spec-version",
            "not-checked/web-app-manifest",
            "not-checked/unrelated-run-json",
            "not-checked/json-not-a-manifest",
        ),
    ),
    (
        "**A directory** that cannot be listed is `not_checked`",
        ("test:test_target_detection.py::test_an_unreadable_manifest_in_a_checkpoint",),
    ),
    (
        "a directory with a `manifest.json` entry (of any kind) is a checkpoint",
        (
            "valid/checkpoint-world2",
            "invalid/layout/manifest-is-directory",
            "invalid/layout/manifest-link-dangling",
        ),
    ),
    (
        "a directory with a `run.json`, `.writer.lock` or `.rewound` entry, or a staging directory",
        (
            "valid/run-empty",
            "invalid/run/run-index-missing",
            "invalid/run/run-index-missing-rewound",
            "invalid/run/run-index-missing-staging",
        ),
    ),
    (
        "a directory inside a checkpoint (one of its 16 nearest ancestors",
        ("not-checked/directory-in-checkpoint",),
    ),
    ("are run directories is `not_checked`, naming the first", ("not-checked/parent-of-run",)),
    (
        "are checkpoint directories is `not_checked`, naming the one of the highest step",
        ("not-checked/copied-checkpoints",),
    ),
    (
        "any other directory is validated as a checkpoint, which reports `CHECKPOINT_NO_MANIFEST`",
        ("invalid/layout/checkpoint-no-manifest",),
    ),
    (
        "A regular file inside a checkpoint that is not its manifest",
        ("not-checked/payload-file", "not-checked/json-payload-in-checkpoint"),
    ),
    ("What each target's validation covers", ("valid/manifest-alone",)),
    (
        "Nothing about its directory: not its name, its `run_id` against a run, nor its files",
        ("valid/manifest-alone",),
    ),
    (
        "document, structure, run-index rules (including the rewind rules that need no directory)",
        (
            "invalid/run/rewind-moved-to-elsewhere",
            "invalid/run/rewind-fork-id-reused",
            "valid/run-index-alone-rewind",
        ),
    ),
    (
        "the manifest as above, then the files stage of the directory",
        ("invalid/layout/file-missing", "invalid/manifest/schema-error-skips-files"),
    ),
    (
        "every committed checkpoint (as above, with its `run_id` against the run), every `step-*` directory without a manifest",
        (
            "invalid/layout/checkpoint-run-id",
            "invalid/layout/uncommitted-step-dir",
            "invalid/run/latest-stale",
        ),
    ),
    (
        "Each document passes the stages in order",
        (
            "invalid/manifest/schema-error-hides-rules",
            "invalid/versioning/version-unsupported-only",
        ),
    ),
    (
        "It reports at most one finding, and nothing after it runs for the document",
        (
            "invalid/manifest/json-nan-and-duplicate-key",
            "invalid/manifest/json-lone-surrogate-and-duplicate-key",
        ),
    ),
    ("size (`JSON_TOO_LARGE`, over 64 MiB)", ("invalid/manifest/json-too-large",)),
    (
        "UTF-8 (`JSON_ENCODING`",
        ("invalid/manifest/json-encoding", "invalid/manifest/json-encoding-before-syntax"),
    ),
    (
        "nesting depth (`JSON_TOO_DEEP`)",
        (
            "invalid/manifest/json-too-deep",
            "invalid/manifest/json-too-deep-for-parser",
            "invalid/manifest/json-too-deep-before-nan",
        ),
    ),
    (
        "which stops at the first defect in document order",
        ("invalid/manifest/json-syntax-before-nan", "invalid/manifest/json-nan-and-duplicate-key"),
    ),
    ("malformed JSON (`JSON_SYNTAX`)", ("invalid/manifest/json-syntax",)),
    (
        "the tokens `NaN`, `Infinity`, `-Infinity`",
        (
            "invalid/manifest/json-nan",
            "invalid/manifest/json-infinity",
            "invalid/manifest/json-negative-infinity",
        ),
    ),
    (
        "is infinite: 2^1024 − 2^970 or more",
        (
            "invalid/manifest/json-overflow",
            "invalid/manifest/json-integer-rounds-to-infinity",
            "invalid/manifest/json-integer-overflow",
            "invalid/manifest/json-integer-digits",
            "valid/manifest-largest-double",
        ),
    ),
    (
        "then lone surrogate escapes (`JSON_ENCODING`)",
        (
            "invalid/manifest/json-lone-surrogate",
            "invalid/manifest/json-lone-surrogate-and-duplicate-key",
        ),
    ),
    (
        "repeated keys (`JSON_DUPLICATE_KEY`, one finding for all of them)",
        ("invalid/manifest/json-duplicate-key",),
    ),
    (
        "So a document with both a `NaN` and a repeated key reports `JSON_NONFINITE` only",
        ("invalid/manifest/json-nan-and-duplicate-key",),
    ),
    (
        "`VERSION_UNSUPPORTED` when `spec_version` is well-formed",
        (
            "invalid/versioning/version-unsupported",
            "invalid/versioning/version-unsupported-only",
            "invalid/manifest/schema-spec-version-malformed",
        ),
    ),
    (
        "**structure**: the JSON Schema of the document's major version",
        (
            "invalid/manifest/schema-missing-field",
            "invalid/run/run-index-schema",
            "invalid/manifest/schema-v2-field-in-v1",
        ),
    ),
    (
        "When the structure is invalid, no later stage runs for the document",
        ("invalid/manifest/schema-error-hides-rules", "invalid/manifest/schema-error-skips-files"),
    ),
    (
        "**rule**: the cross-field rules of `manifest.md` and `run.md`",
        ("invalid/manifest/step-mismatch", "invalid/run/best-record-incomplete"),
    ),
    (
        "Each rule runs; a rule never runs on a structurally invalid document",
        (
            "invalid/manifest/per-rank-rank-beyond-world-and-gap",
            "invalid/manifest/schema-error-hides-rules",
        ),
    ),
    (
        "**files** (a checkpoint): the manifest entry itself, the directory's name against the step",
        (
            "invalid/layout/checkpoint-no-manifest",
            "invalid/layout/dir-step-mismatch",
            "invalid/layout/checkpoint-run-id",
            "invalid/layout/unlisted-file",
        ),
    ),
    (
        "**run** (a run): the committed checkpoints against `run.json`",
        ("invalid/run/latest-stale", "invalid/run/best-deleted"),
    ),
    ("Details of the document stage", ("invalid/manifest/json-bom",)),
    ("a UTF-8 BOM (`EF BB BF`) at the start is `JSON_SYNTAX`", ("invalid/manifest/json-bom",)),
    (
        "a document of depth 64 is accepted, 65 is not",
        ("valid/manifest-depth-64", "invalid/manifest/json-depth-65"),
    ),
    ("Brackets inside strings do not count", ("valid/manifest-brackets-in-strings",)),
    (
        "`100.0` is an integral value wherever the schema wants an integer",
        ("valid/manifest-integral-floats", "invalid/manifest/schema-fractional-step"),
    ),
    (
        "A schema error about the **value** of a member at these locations is reported with the code given here",
        (
            "invalid/layout/path-absolute",
            "invalid/digest/schema-digest-length",
            "invalid/manifest/format-unsafe",
            "invalid/layout/rewind-moved-to-absolute",
        ),
    ),
    (
        "a missing required member, and a member the schema does not define, keep the document's schema code",
        ("invalid/manifest/schema-file-without-digest", "invalid/manifest/schema-unknown-field"),
    ),
    ("its errors use the same table", ("invalid/digest/schema-v1-sha256-malformed",)),
    (
        "A validator that is not written in Python applies it to the errors of any JSON Schema validator",
        ("test:test_ajv_agreement.py::test_ajv_agrees_with_jsonschema_and_pydantic",),
    ),
    (
        "A document whose major version is not implemented: `VERSION_UNSUPPORTED`",
        ("invalid/versioning/version-unsupported",),
    ),
    (
        "a member the validator does not know is a warning, `VERSION_UNKNOWN_FIELD`",
        (
            "invalid/versioning/version-unknown-field",
            "invalid/versioning/v2-newer-minor-unknown-field",
        ),
    ),
    (
        "this includes `digest`: a warning, and the entry still needs `sha256`",
        (
            "invalid/versioning/v1-minor-digest-field",
            "invalid/manifest/v1-minor-digest-without-sha256",
        ),
    ),
    (
        "In a document of the implemented minor version or an older one (1.0, 2.0, 2.1), an unknown member is a schema error",
        (
            "invalid/manifest/schema-v2-field-in-v1",
            "invalid/manifest/schema-unknown-field",
            "invalid/manifest/schema-unknown-field-2.1",
        ),
    ),
    (
        "A document of a newer minor version whose **value** this validator cannot know",
        ("not-checked/newer-minor-enum-value", "not-checked/newer-minor-digest-algorithm"),
    ),
    (
        "In a document of the implemented minor version, the same values are schema errors",
        (
            "invalid/digest/schema-digest-unknown-algorithm",
            "invalid/manifest/format-unsafe",
            "invalid/manifest/schema-unknown-kind",
        ),
    ),
    ("the **committed checkpoints** are the entries that", ("valid/run-complete",)),
    (
        "are named `step-` and a step in its one canonical form",
        ("valid/run-noncanonical-step-name", "valid/run-step-name-too-short"),
    ),
    ("are directories themselves, not symbolic links", ("valid/run-step-link-not-committed",)),
    (
        "hold a `manifest.json` entry, whatever it is",
        ("invalid/layout/committed-manifest-is-directory",),
    ),
    (
        "Whether the manifest is valid does not matter for being committed",
        (
            "invalid/manifest/invalid-checkpoint-still-committed",
            "invalid/manifest/best-checkpoint-invalid",
            "invalid/run/retention-counts-invalid-checkpoint",
        ),
    ),
    (
        "`BEST_SCORE_MISMATCH` is checked only when the best checkpoint's manifest passes its structure stage",
        ("invalid/manifest/best-checkpoint-invalid", "invalid/run/best-score-mismatch"),
    ),
    (
        "A `step-*` directory without a manifest entry is not committed, and reported",
        ("invalid/layout/uncommitted-step-dir",),
    ),
    (
        "Checkpoints in `.rewound/` and staging directories are not part of the run's listing",
        ("valid/run-complete", "invalid/manifest/invalid-checkpoint-still-committed"),
    ),
    (
        "`latest_step` is compared with the highest committed step, never with anything else",
        ("invalid/run/latest-stale", "invalid/run/latest-ahead"),
    ),
    (
        "The `latest` link is compared with the highest committed step, not with `latest_step`",
        ("invalid/run/latest-link-follows-stale-index",),
    ),
    (
        "The `best` link is compared with the best record's step when that step is committed",
        (
            "invalid/run/best-link",
            "invalid/run/best-link-without-best-step",
            "invalid/run/best-link-to-deleted",
        ),
    ),
    (
        "Retention counts committed checkpoints: more than `keep_last`, plus one if the best checkpoint is committed and not among the `keep_last` highest",
        (
            "valid/run-complete",
            "invalid/run/retention-exceeded",
            "invalid/run/retention-best-among-kept",
        ),
    ),
    (
        "an entry of that name that is not a symbolic link is wrong",
        ("invalid/run/latest-not-a-link", "invalid/run/best-not-a-link"),
    ),
    (
        "`./step-000000300` and an absolute path to that directory are all accepted",
        ("valid/run-link-forms", "valid/run-complete"),
    ),
    (
        "a link that dangles, or leads anywhere else, is wrong",
        ("invalid/run/latest-link-dangling", "invalid/run/latest-link"),
    ),
    (
        "A path whose resolution goes through a symbolic link leading out of the directory is `PATH_ESCAPES`",
        ("invalid/layout/path-escapes", "invalid/layout/path-escapes-relative"),
    ),
    (
        "A link that stays inside and leads to nothing is `FILE_MISSING`",
        ("invalid/layout/file-missing-dangling-link",),
    ),
    (
        "one that leads to something other than a regular file is `FILE_NOT_REGULAR`",
        ("invalid/layout/file-not-regular",),
    ),
    (
        "`manifest.json` may be a link that stays inside the directory",
        ("invalid/layout/manifest-link-inside",),
    ),
    (
        "One that leads out of the directory is `PATH_ESCAPES`",
        ("invalid/layout/manifest-link-escapes",),
    ),
    (
        "A `manifest.json` that is neither a regular file nor a link",
        (
            "invalid/layout/manifest-is-directory",
            "invalid/layout/manifest-link-not-regular",
            "invalid/layout/manifest-link-dangling",
        ),
    ),
    (
        "`run.json` must be a regular file of the run directory",
        ("invalid/run/run-index-is-link", "invalid/run/run-index-missing"),
    ),
    (
        "A `moved_to` directory of a rewind that is a symbolic link",
        ("invalid/run/rewind-moved-to-link",),
    ),
    ("the validator reports the first that applies of", ("invalid/layout/file-size-mismatch",)),
    (
        "`PATH_ESCAPES`, then `FILE_MISSING`, then `FILE_NOT_REGULAR`",
        ("invalid/layout/path-escapes", "invalid/layout/file-not-regular"),
    ),
    ("A file whose size differs is not hashed", ("invalid/layout/file-size-mismatch",)),
    (
        "`RANK_OUT_OF_RANGE` (MANIFEST-8). It does not count towards",
        (
            "invalid/manifest/per-rank-rank-beyond-world",
            "invalid/manifest/per-rank-rank-beyond-world-and-gap",
        ),
    ),
    (
        "**`manifest.json` listed as a payload** file",
        ("invalid/manifest/manifest-listed-as-payload",),
    ),
    ("**A path listed twice**: `DUPLICATE_FILE`", ("invalid/manifest/duplicate-file",)),
    (
        "how many findings of one code that yields is implementation-defined",
        (IMPLEMENTATION_DEFINED,),
    ),
    ("**Order of `ranks`**: carries no meaning", ("valid/manifest-ranks-unordered",)),
    (
        "**The files stage of a checkpoint that is not a valid manifest**: not run",
        ("invalid/manifest/schema-error-skips-files",),
    ),
    ("**A best record that names an uncommitted step**", ("invalid/run/best-deleted",)),
    (
        "`REWIND_RECORD` (RUN-6) is reported for each of these, and only these",
        ("valid/run-complete", "valid/run-index-alone-rewind"),
    ),
    (
        "`moved_to` is not `.rewound/<fork_id>` (rule stage)",
        ("invalid/run/rewind-moved-to-elsewhere",),
    ),
    ("a `fork_id` is used by an earlier record", ("invalid/run/rewind-fork-id-reused",)),
    ("`discarded_steps` is not strictly ascending", ("invalid/run/rewind-steps-not-ascending",)),
    (
        "the lowest discarded step is not after `resumed_from_step`",
        ("invalid/run/rewind-record-order",),
    ),
    (
        "(in a run) `moved_to` is not a directory of the run, or is a symbolic link",
        ("invalid/run/rewind-moved-to-missing", "invalid/run/rewind-moved-to-link"),
    ),
    (
        "(in a run) a discarded step has no directory",
        ("invalid/run/rewind-step-not-in-fork", "invalid/run/rewind-step-link-in-fork"),
    ),
    ("`not_checked` (exit status 2) is the answer, never a finding", ("not-checked/path-missing",)),
    (
        "a path does not exist, cannot be examined or read",
        (
            "not-checked/path-missing",
            "test:test_target_detection.py::test_a_fifo_is_refused_without_blocking",
        ),
    ),
    (
        "a path is none of the four targets",
        ("not-checked/json-not-a-manifest", "not-checked/copied-checkpoints"),
    ),
    (
        "a manifest, `run.json` or a `step-*` checkpoint's manifest exists but cannot be read",
        (
            "test:test_target_detection.py::test_an_unreadable_manifest_in_a_checkpoint",
            "test:test_target_detection.py::test_an_unreadable_payload_under_deep",
        ),
    ),
    (
        "A file deleted, or replaced by a FIFO or a link, between resolution and reading is a finding",
        (
            "test:test_confinement.py::test_a_file_changed_between_resolution_and_reading_is_a_finding",
        ),
    ),
    (
        "a document of a newer minor version holds a value this validator cannot know",
        ("not-checked/newer-minor-enum-value",),
    ),
    (
        "with `deep`, hashing was stopped before it finished (a time limit or an interruption the user asked for); what was checked before it stays reported",
        (
            "test:../cli/test_cli_deep_limits.py::test_timeout_stops_with_exit_2_and_one_line_naming_how_far",
            "test:../cli/test_cli_deep_limits.py::test_timeout_keeps_findings_of_paths_checked_before",
            "test:../cli/test_cli_deep_limits.py::test_ctrl_c_stops_with_exit_2_and_how_far_after_the_estimate",
        ),
    ),
    (
        "A file digest naming an algorithm this validator does not implement in a document of the implemented minor version is `DIGEST_INVALID`",
        (
            "invalid/digest/schema-digest-unknown-algorithm",
            "invalid/digest/schema-digest-unknown-algorithm-shallow",
        ),
    ),
    ("Deliberately left to implementations", (IMPLEMENTATION_DEFINED,)),
]
"""(a quotation of validating.md, what pins it)."""

GUESSES: dict[str, tuple[str, ...]] = {
    "schema error to finding code": (
        "invalid/layout/path-absolute",
        "invalid/digest/schema-digest-length",
        "invalid/manifest/format-unsafe",
        "invalid/manifest/schema-file-without-digest",
        "invalid/digest/schema-v1-sha256-malformed",
        "invalid/layout/rewind-moved-to-absolute",
    ),
    "checkpoint, run or bare document": (
        "valid/manifest-named-otherwise",
        "not-checked/copied-checkpoints",
        "invalid/run/run-index-missing-staging",
        "not-checked/web-app-manifest",
    ),
    "what a lone manifest's validation covers": ("valid/manifest-alone",),
    "which checkpoints are committed": (
        "invalid/manifest/invalid-checkpoint-still-committed",
        "invalid/layout/committed-manifest-is-directory",
        "valid/run-step-link-not-committed",
        "valid/run-noncanonical-step-name",
    ),
    "latest compared with latest_step or the highest step": (
        "invalid/run/latest-link-follows-stale-index",
    ),
    "accepted link target forms": ("valid/run-link-forms", "invalid/run/latest-link-dangling"),
    "order and count of document-stage findings": (
        "invalid/manifest/json-nan-and-duplicate-key",
        "invalid/manifest/json-syntax-before-nan",
    ),
    "top-level container and the 64 levels": (
        "valid/manifest-depth-64",
        "invalid/manifest/json-depth-65",
    ),
    "UTF-8 BOM": ("invalid/manifest/json-bom",),
    "escaping link: FILE_MISSING or PATH_ESCAPES": (
        "invalid/layout/path-escapes",
        "invalid/layout/manifest-link-escapes",
    ),
    "digest checked after a size mismatch": ("invalid/layout/file-size-mismatch",),
    "per_rank file with rank >= world size": (
        "invalid/manifest/per-rank-rank-beyond-world",
        "invalid/manifest/per-rank-rank-beyond-world-and-gap",
    ),
    "manifest.json listed as a payload": ("invalid/manifest/manifest-listed-as-payload",),
    "ranks not ascending": ("valid/manifest-ranks-unordered",),
    "REWIND_RECORD enumerated": (
        "invalid/run/rewind-moved-to-elsewhere",
        "invalid/run/rewind-fork-id-reused",
        "invalid/run/rewind-steps-not-ascending",
        "invalid/run/rewind-record-order",
        "invalid/run/rewind-moved-to-missing",
        "invalid/run/rewind-step-not-in-fork",
    ),
    "JSON digest with floats and control characters": (
        "valid/manifest-fingerprint-jcs",
        "invalid/manifest/fingerprint-legacy-digest-in-2.1",
        "valid/manifest-fingerprint-legacy-2.0",
    ),
    "unimplemented digest algorithm": (
        "invalid/digest/schema-digest-unknown-algorithm",
        "not-checked/newer-minor-digest-algorithm",
    ),
    "unknown enum value of a newer minor": (
        "not-checked/newer-minor-enum-value",
        "invalid/manifest/schema-unknown-kind",
    ),
    "a 1.3 manifest with digest": (
        "invalid/versioning/v1-minor-digest-field",
        "invalid/manifest/v1-minor-digest-without-sha256",
    ),
    "2^1024 versus too large for a double": (
        "invalid/manifest/json-integer-rounds-to-infinity",
        "valid/manifest-largest-double",
    ),
    "eval.metrics minProperties": ("invalid/manifest/schema-eval-metrics-empty",),
}
"""The issue's "Silent: needed a guess" list, and the cases that now answer each item."""


def _normalised(text: str) -> str:
    return " ".join(text.split())


def _blocks(text: str) -> list[str]:
    """The page's paragraphs and list items, without headings, tables and generated sections."""
    text = re.sub(r"<!-- BEGIN GENERATED.*?END GENERATED -->", "", text, flags=re.S)
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "|")) or re.match(r"^(\d+\.|-) ", stripped):
            if current:
                blocks.append(current)
            current = []
            if not stripped or stripped.startswith(("#", "|")):
                continue
        current.append(stripped)
    if current:
        blocks.append(current)
    return [" ".join(b) for b in blocks]


def _pins() -> set[str]:
    return {pin for _, pins in RULES for pin in pins} | {
        pin for pins in GUESSES.values() for pin in pins
    }


def test_every_rule_quotes_the_page() -> None:
    page = _normalised(VALIDATING.read_text(encoding="utf-8"))
    missing = [quote for quote, _ in RULES if _normalised(quote) not in page]
    assert not missing, missing


def test_every_paragraph_and_list_item_holds_a_rule() -> None:
    quotes = [_normalised(quote) for quote, _ in RULES]
    unpinned = [
        b
        for b in _blocks(VALIDATING.read_text(encoding="utf-8"))
        if not any(q in b for q in quotes)
    ]
    assert not unpinned, unpinned


def test_every_pin_exists() -> None:
    case_ids = {c.id for c in CASES}
    for pin in _pins():
        if pin == IMPLEMENTATION_DEFINED:
            continue
        if pin.startswith("test:"):
            module, name = pin[len("test:") :].split("::")
            assert f"def {name}(" in (TESTS / module).read_text(encoding="utf-8"), pin
        else:
            assert pin in case_ids, pin


def test_every_rule_is_pinned_or_implementation_defined() -> None:
    """A rule left to implementations says so where it stands."""
    assert all(pins for _, pins in RULES) and all(pins for pins in GUESSES.values())
    blocks = _blocks(VALIDATING.read_text(encoding="utf-8"))
    for quote, pins in RULES:
        if IMPLEMENTATION_DEFINED in pins:
            block = next(b for b in blocks if _normalised(quote) in b)
            assert "implementation-defined" in block or "left to implementations" in block, quote
