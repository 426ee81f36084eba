"""The registry of every spec v1 requirement.

Requirements are data: the docs' requirement tables are generated from :data:`REQUIREMENTS`,
validator findings and conformance tests name their requirement by ID, and the conformance
meta-test checks that every MUST verified by conformance has at least one test. IDs are public
API: a requirement may be reworded or deprecated, never renumbered.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ckptspec.layout import LAYOUT


class Level(str, Enum):
    """RFC 2119 level of a requirement."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"


class Section(str, Enum):
    """The part of the spec a requirement belongs to; each is one page of ``docs/spec/``."""

    LAYOUT = "layout"
    MANIFEST = "manifest"
    COMMIT = "commit"
    RUN = "run"
    RESUME = "resume"
    EVAL = "eval"
    DIGEST = "digest"
    VERSION = "versioning"


Verifier = Literal["validator", "conformance"]


class ConformanceClass(str, Enum):
    """Which trainer class a requirement belongs to (``docs/spec/conformance-classes.md``).

    ``resume`` (*resume-conformant trainer*) requirements are about behaviour and hold for any
    checkpoint format; ``writer`` (*ckptspec writer*) requirements are about ckptspec's on-disk
    layout, manifest, commit protocol and run index, and do not apply to a native-format trainer.
    """

    RESUME = "resume"
    WRITER = "writer"


_RESUME_CLASS = frozenset(
    {"COMMIT-2", "COMMIT-4", "COMMIT-5", "RUN-4", "RUN-5", "RUN-9", "DIGEST-1"}
)
_RESUME_SECTIONS = ("RESUME-", "EVAL-")


class Requirement(BaseModel):
    """One normative requirement of the spec, identified by a stable ID."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[A-Z]+-[1-9][0-9]*$", description="Stable ID, e.g. LAYOUT-3.")
    level: Level = Field(description="RFC 2119 level.")
    section: Section = Field(description="Spec section that defines the requirement.")
    title: str = Field(description="A short name for tables and reports.")
    statement: str = Field(description="The normative wording, using RFC 2119 keywords.")
    verified_by: tuple[Verifier, ...] = Field(
        description="Which tools check the requirement: the static validator, the conformance suite, or both."
    )
    conformance_class: ConformanceClass = Field(
        description="`resume`: a resume-conformant trainer must keep it in any checkpoint format; "
        "`writer`: it is about ckptspec's format, and applies only to ckptspec writers."
    )


def _r(
    id: str, level: str, section: Section, title: str, statement: str, *verified_by: Verifier
) -> Requirement:
    return Requirement(
        id=id,
        level=Level(level),
        section=section,
        title=title,
        statement=statement,
        verified_by=verified_by,
        conformance_class=ConformanceClass.RESUME
        if id in _RESUME_CLASS or id.startswith(_RESUME_SECTIONS)
        else ConformanceClass.WRITER,
    )


L, M, C, R, RS, E, D, V = (
    Section.LAYOUT,
    Section.MANIFEST,
    Section.COMMIT,
    Section.RUN,
    Section.RESUME,
    Section.EVAL,
    Section.DIGEST,
    Section.VERSION,
)

REQUIREMENTS: tuple[Requirement, ...] = (
    # --- layout -------------------------------------------------------------------------
    _r(
        "LAYOUT-1",
        "MUST",
        L,
        "Run directory",
        "A run MUST live in its own directory `<output_dir>/<run_id>/`, where `run_id` matches "
        f"`{LAYOUT.run_id_pattern}`; the run directory MUST NOT contain checkpoints of "
        "another run.",
        "validator",
        "conformance",
    ),
    _r(
        "LAYOUT-2",
        "MUST",
        L,
        "Checkpoint directory name",
        "A committed checkpoint MUST be a direct child of the run directory named `step-` followed "
        "by its step as nine or more decimal digits, zero-padded to nine, and that step MUST equal "
        "the manifest's `step`.",
        "validator",
        "conformance",
    ),
    _r(
        "LAYOUT-3",
        "MUST",
        L,
        "Manifest is the commit marker",
        "A checkpoint directory MUST contain `manifest.json`. A directory without a valid manifest "
        "is not a checkpoint: readers MUST NOT list, resume from or delete-protect it as one.",
        "validator",
        "conformance",
    ),
    _r(
        "LAYOUT-4",
        "MUST",
        L,
        "Staging directories are invisible",
        "In-flight saves MUST write into a staging directory named "
        "`.staging-step-<step>-<32 hex digits>` inside the run directory. Readers MUST ignore "
        "staging directories; a writer MAY delete stale ones when it starts.",
        "validator",
        "conformance",
    ),
    _r(
        "LAYOUT-5",
        "MUST",
        L,
        "Listed files exist with their size and digest",
        "Every file the manifest lists MUST exist as a regular file in the checkpoint directory "
        "with exactly the listed size in bytes and the listed digest.",
        "validator",
        "conformance",
    ),
    _r(
        "LAYOUT-6",
        "MUST",
        L,
        "Paths are confined",
        "Every path in a manifest MUST be relative, use `/` as separator, be normalised (no empty, "
        "`.` or `..` segments) and resolve inside the checkpoint directory. A symbolic link whose "
        "target leaves the checkpoint directory MUST be treated as a missing file, and readers "
        "MUST NOT follow it.",
        "validator",
    ),
    _r(
        "LAYOUT-7",
        "SHOULD",
        L,
        "No unlisted payload",
        "A checkpoint directory SHOULD contain no regular file other than `manifest.json` and the "
        "files its manifest lists.",
        "validator",
    ),
    _r(
        "LAYOUT-8",
        "MUST",
        L,
        "Discovery by step and marker",
        "Tools MUST discover checkpoints by the step in the directory name and the presence of a "
        "valid manifest, never by modification time.",
        "conformance",
    ),
    # --- manifest -----------------------------------------------------------------------
    _r(
        "MANIFEST-1",
        "MUST",
        M,
        "Schema",
        "`manifest.json` MUST be a UTF-8 JSON object valid against the manifest schema of its "
        "`spec_version`; fields not defined by the schema MUST appear only inside `extensions`.",
        "validator",
    ),
    _r(
        "MANIFEST-2",
        "MUST",
        M,
        "Well-formed JSON within limits",
        "`manifest.json` and `run.json` MUST be UTF-8 encoded JSON of at most 64 MiB, MUST NOT "
        "nest arrays and objects deeper than 64 levels, MUST NOT contain NaN or infinite numbers "
        "or any number, integer or not, whose magnitude does not fit in an IEEE 754 double, MUST NOT "
        "contain a string escape that encodes a lone surrogate (such as `\\ud800`), "
        "and MUST NOT repeat a key within an object. Readers MUST report a violation as a finding "
        "and MUST NOT crash on it.",
        "validator",
    ),
    _r(
        "MANIFEST-3",
        "MUST",
        M,
        "Step matches progress",
        "The manifest's `step` MUST equal `progress.global_step`, and "
        "`progress.accumulation_steps` MUST equal the fingerprinted `accumulation_steps`.",
        "validator",
    ),
    _r(
        "MANIFEST-4",
        "MUST",
        M,
        "Per-rank components cover every rank",
        "A `per_rank` component MUST list, for every rank of `topology.world_size`, files written "
        "by that rank alone, and no rank outside it; `per_node` and `per_group` components MUST "
        "declare `group_size` dividing the world size and list files for every group.",
        "validator",
    ),
    _r(
        "MANIFEST-5",
        "MUST",
        M,
        "Sharded means reshardable",
        "A `sharded` component MUST use a reshardable format (`dcp`) and declare "
        "`reshardable: true`; a `per_rank`, `per_node` or `per_group` component MUST declare "
        "`reshardable: false`.",
        "validator",
    ),
    _r(
        "MANIFEST-6",
        "MUST",
        M,
        "Resumable checkpoints are complete",
        "A manifest with `resumable: true` MUST contain a `model`, `optimizer`, `rng` and "
        "`data_position` component. A checkpoint without an `optimizer` component (a weights-only "
        "export) MUST declare `resumable: false`.",
        "validator",
    ),
    _r(
        "MANIFEST-7",
        "MUST",
        M,
        "Safe payload formats",
        "Every payload format MUST be loadable without executing code from the checkpoint: `dcp` "
        "(read with a restricted unpickler for its metadata), `safetensors`, `torch_weights_only`, "
        "`json` or `raw`.",
        "validator",
    ),
    _r(
        "MANIFEST-8",
        "MUST",
        M,
        "Topology is consistent",
        "The product of the device-mesh dimension sizes MUST equal `topology.world_size`, and "
        "every writer rank MUST be in `[0, world_size)`.",
        "validator",
    ),
    _r(
        "MANIFEST-9",
        "MUST",
        M,
        "Config fingerprint",
        "The manifest MUST carry a config fingerprint whose values include `accumulation_steps`, "
        "`global_batch_size`, `dataset` and `model`, and whose `sha256` is the canonical digest "
        "of those values.",
        "validator",
    ),
    _r(
        "MANIFEST-10",
        "MUST",
        M,
        "Unique names and files",
        "Component names MUST be unique, and each file path MUST belong to exactly one component.",
        "validator",
    ),
    _r(
        "MANIFEST-11",
        "MUST",
        M,
        "Replication checks agree",
        "A replication check recorded in the manifest MUST list one digest per checked rank, and "
        "a checkpoint whose recorded digests disagree MUST NOT be committed.",
        "validator",
    ),
    _r(
        "MANIFEST-12",
        "SHOULD",
        M,
        "Optimizer step count",
        "Where the optimizer payload exposes a step count, the component SHOULD record it in "
        "`step_count`, and it MUST then equal `progress.global_step`.",
        "validator",
    ),
    _r(
        "MANIFEST-13",
        "MUST",
        M,
        "Elastic resumes are recorded",
        "A checkpoint written after a resume MUST record it in `resumed_from`; when rank-local "
        "state was re-derived instead of loaded, `resumed_from.elastic` MUST be true and "
        "`resumed_from.rederived` MUST name the components.",
        "validator",
        "conformance",
    ),
    # --- commit protocol ----------------------------------------------------------------
    _r(
        "COMMIT-1",
        "MUST",
        C,
        "Stage, flush, then mark",
        "A writer MUST write every payload into a staging directory, flush and fsync each file, "
        "and only then write `manifest.json` (temporary file, fsync, rename) and rename the "
        "staging directory to its final name, fsyncing the run directory afterwards.",
        "conformance",
    ),
    _r(
        "COMMIT-2",
        "MUST",
        C,
        "Crash consistency",
        "A crash at any point of a save MUST leave the run with either the previous committed "
        "state or the new committed checkpoint: `latest` MUST resolve to a committed checkpoint "
        "that validates and resumes, and earlier checkpoints MUST be unchanged.",
        "conformance",
    ),
    _r(
        "COMMIT-3",
        "MUST",
        C,
        "Index after commit",
        "`run.json` MUST be updated only after the checkpoint directory is committed, and "
        "atomically (temporary file, fsync, rename).",
        "validator",
        "conformance",
    ),
    _r(
        "COMMIT-4",
        "MUST",
        C,
        "One rank fails, all fail",
        "A save that fails on any rank MUST fail on every rank, with no rank left blocked in a "
        "collective, and MUST NOT commit.",
        "conformance",
    ),
    _r(
        "COMMIT-5",
        "MUST",
        C,
        "Durable across power loss",
        "A save MUST survive a power loss once it has returned, and a power loss at any point of "
        "a save MUST leave the newest durably committed checkpoint and everything committed "
        "before it intact: a writer MUST fsync each file's data before the commit marker that "
        "names it, fsync the parent directory after every create, rename or unlink the commit "
        "depends on, before the save returns, and MUST NOT rewrite a committed file or a pointer "
        "file (run index, `latest`, best) in place. The crash model is that of `docs/spec/commit.md`.",
        "conformance",
    ),
    # --- run directory ------------------------------------------------------------------
    _r(
        "RUN-1",
        "MUST",
        R,
        "Run index schema",
        "A run directory MUST contain `run.json` valid against the run-index schema, whose "
        "`run_id` equals the directory name and the `run_id` of every checkpoint in it.",
        "validator",
    ),
    _r(
        "RUN-2",
        "MUST",
        R,
        "Latest",
        "`run.json`'s `latest_step` MUST be the highest committed step of the run (null when "
        "there is none), and a `latest` symbolic link, if present, MUST point at that checkpoint.",
        "validator",
        "conformance",
    ),
    _r(
        "RUN-3",
        "MUST",
        R,
        "Best record",
        "A best record MUST name its metric, mode (`max` or `min`) and `min_delta`; its `step`, "
        "when set, MUST be a committed checkpoint whose eval metrics contain the metric with the "
        "recorded score. A `best` symbolic link, if present, MUST point at that checkpoint.",
        "validator",
        "conformance",
    ),
    _r(
        "RUN-4",
        "MUST",
        R,
        "Best is durable and agreed",
        "The best record MUST change only when a new score improves on the recorded one by more "
        "than `min_delta` in the declared mode, MUST be the same on every rank, and MUST survive "
        "restarts (rehydrated from `run.json`).",
        "conformance",
    ),
    _r(
        "RUN-5",
        "MUST",
        R,
        "Retention",
        "With `keep_last: N`, a writer MUST keep at least the N highest committed steps and MUST "
        "NOT delete the latest checkpoint, the best checkpoint, or the checkpoint just written; a "
        "failed deletion MUST be a warning, not a failure of the save.",
        "validator",
        "conformance",
    ),
    _r(
        "RUN-6",
        "MUST",
        R,
        "Rewind forks the timeline",
        "Saving step S while committed steps >= S exist MUST first move those checkpoints out of "
        "the run's listing into `.rewound/<fork id>/` (not delete them), record the fork in "
        "`run.json`'s `rewinds`, and clear a best record that pointed into them.",
        "validator",
        "conformance",
    ),
    _r(
        "RUN-7",
        "SHOULD",
        R,
        "Retention respected",
        "A run directory SHOULD hold no more committed checkpoints than its retention policy "
        "keeps (the N latest plus the best).",
        "validator",
    ),
    _r(
        "RUN-8",
        "MUST",
        R,
        "Single writer per run",
        "A writer MUST hold an exclusive claim on the run directory (the lock file named by the "
        "layout) from before it modifies anything in the run, including start-up clean-up, for as "
        "long as it may write. A second writer MUST be refused with a typed error before it "
        "modifies anything, on every one of its ranks alike. The claim MUST be released by the "
        "writer's death without manual clean-up.",
        "validator",
        "conformance",
    ),
    _r(
        "RUN-9",
        "MUST",
        R,
        "Restart is idempotent",
        "Restarting a run with the same command MUST be idempotent across its policies (retention, "
        "best, rewind, repair of a lagging or missing run index): a run interrupted at a step "
        "boundary and restarted MUST end with the same committed steps, latest and best "
        "checkpoints as the run never interrupted, training the same step records and keeping "
        "the rewinds the interrupted run recorded; restarting the finished run again MUST train "
        "nothing and change no committed checkpoint and, for a ckptspec writer, neither `run.json` "
        "(beyond its `updated_at`) nor the `latest` and `best` links.",
        "conformance",
    ),
    # --- resume invariants --------------------------------------------------------------
    _r(
        "RESUME-1",
        "MUST",
        RS,
        "Bit-exact continuation",
        "Resumed in fresh processes at the same world size and config, a run saved at step K MUST "
        "produce, at every later step, bitwise the same losses, learning rates, parameters, "
        "optimizer state, scheduler state and RNG-dependent results as the uninterrupted run.",
        "conformance",
    ),
    _r(
        "RESUME-2",
        "MUST",
        RS,
        "Resharding",
        "Reshardable components MUST load at any world size the trainer supports, with full "
        "tensors bitwise equal to those saved.",
        "conformance",
    ),
    _r(
        "RESUME-3",
        "MUST",
        RS,
        "World-size mismatch fails fast",
        "Loading at a world size different from the saved one MUST fail, before any live state "
        "is modified, with an error naming every rank-local component that cannot be resharded, "
        "unless the trainer declares an elastic policy, in which case it MUST re-derive that "
        "state deterministically and record the elastic resume in its next manifest.",
        "conformance",
    ),
    _r(
        "RESUME-4",
        "MUST",
        RS,
        "Data position",
        "Across a resume, no training sample MUST be skipped or repeated: the sequence of samples "
        "consumed equals that of the uninterrupted run.",
        "conformance",
    ),
    _r(
        "RESUME-5",
        "MUST",
        RS,
        "Config drift fails fast",
        "A resume whose fingerprinted settings differ from the checkpoint's MUST fail before any "
        "live state is modified, naming every differing key.",
        "conformance",
    ),
    _r(
        "RESUME-6",
        "MUST",
        RS,
        "Integrity before mutation",
        "A missing, truncated or corrupted checkpoint file MUST be detected, and the resume MUST "
        "fail, before any live state is modified.",
        "conformance",
    ),
    _r(
        "RESUME-7",
        "MUST",
        RS,
        "Idempotent restart",
        "Resuming a run that already reached its final step MUST do no training work and write "
        "no checkpoint.",
        "conformance",
    ),
    _r(
        "RESUME-8",
        "MUST",
        RS,
        "RNG per rank and current device",
        "RNG state MUST be saved and restored per rank, for the CPU generator and the current "
        "accelerator device only, so that a checkpoint does not depend on how many devices a "
        "node has.",
        "conformance",
    ),
    _r(
        "RESUME-9",
        "MUST",
        RS,
        "Optimizer-step boundaries",
        "A checkpoint MUST be taken at an optimizer-step boundary, so that no partially "
        "accumulated gradient is lost or double-counted across a resume. A save requested in the "
        "middle of a gradient-accumulation cycle MUST either be refused with an error, leaving the "
        "live state and the run directory unchanged, or record the partial cycle so that training "
        "resumed from it is bit-exact with training that was never interrupted.",
        "conformance",
    ),
    _r(
        "RESUME-10",
        "SHOULD",
        RS,
        "Deferred gradient sync",
        "Gradient accumulation with deferred gradient synchronisation SHOULD produce the same "
        "parameters as synchronising on every micro-step.",
        "conformance",
    ),
    _r(
        "RESUME-11",
        "MUST",
        RS,
        "Saving is invisible",
        "Saving MUST NOT change training: a run that saves at step K, synchronously or "
        "asynchronously, MUST leave the live state unchanged by the save and continue with bitwise "
        "the same step records (loss, learning rate, samples) and full states as the same run "
        "without the save.",
        "conformance",
    ),
    _r(
        "RESUME-12",
        "MUST",
        RS,
        "Steps after a resume",
        "Each step after a resume MUST train on the uninterrupted run's global batch (the same "
        "sample ids over all ranks) with its learning rate; at the same world size it MUST also "
        "draw from the same RNG state and report bitwise the same loss. After an elastic resume "
        "at another world size only rank-local state (such as RNG) is re-derived: the global "
        "batches and learning rates MUST still be the uninterrupted run's.",
        "conformance",
    ),
    # --- evaluation ---------------------------------------------------------------------
    _r(
        "EVAL-1",
        "MUST",
        E,
        "Symmetric collectives",
        "Ranks whose eval shard is empty MUST issue the same collectives as the other ranks, so "
        "that evaluation completes on every rank.",
        "conformance",
    ),
    _r(
        "EVAL-2",
        "MUST",
        E,
        "Global metrics",
        "Eval metrics MUST be identical on every rank and independent of how the eval set is "
        "sharded or batched: reduce sums and counts across ranks, then divide.",
        "conformance",
    ),
    _r(
        "EVAL-3",
        "MUST",
        E,
        "Empty eval set",
        "An empty eval set MUST yield no metrics (not zeros), and MUST NOT update the best record.",
        "validator",
        "conformance",
    ),
    # --- canonical digest ---------------------------------------------------------------
    _r(
        "DIGEST-1",
        "MUST",
        D,
        "Canonical tensor digest",
        "Tools that compare tensors across processes, languages or checkpoints MUST use the "
        "canonical tensor digest: SHA-256 over the header `ckptspec-tensor-v1`, the dtype name, "
        "the shape and the row-major little-endian bytes, as defined in the digest section.",
        "conformance",
    ),
    _r(
        "DIGEST-2",
        "MUST",
        D,
        "File digest algorithms",
        "A file entry's `digest` MUST be `<algorithm>:<hex>`, naming one of the algorithms of the "
        "digest section (`xxh3-128`, `sha256`, `blake3`, `crc32c`) and the digest of the file's "
        "bytes in lower-case hex of that algorithm's length. A writer MAY choose the algorithm per "
        "file; a reader MUST verify every listed algorithm and MUST NOT accept a file whose "
        "algorithm it does not implement.",
        "validator",
    ),
    # --- versioning ---------------------------------------------------------------------
    _r(
        "VERSION-1",
        "MUST",
        V,
        "Spec version",
        "Every manifest and run index MUST carry `spec_version` `MAJOR.MINOR`; a reader MUST "
        "reject a major version it does not implement with a clear error. A reader of minor "
        "version m MUST accept a document of a higher minor version of the same major, checking "
        "the fields it knows and reporting the others as warnings, not errors.",
        "validator",
    ),
)

BY_ID: dict[str, Requirement] = {r.id: r for r in REQUIREMENTS}


def get(requirement_id: str) -> Requirement:
    """Return the requirement with this ID; raise ``KeyError`` naming it if it does not exist."""
    try:
        return BY_ID[requirement_id]
    except KeyError:
        raise KeyError(f"unknown requirement ID {requirement_id!r}") from None
