"""The checkpoint manifest, spec version 2 (spec section *manifest*; version 1 documents are
read through :mod:`ckptspec.structure`).

These models define the structure that the generated JSON Schema carries. Rules that relate
several fields (per-rank coverage, step consistency, fingerprint digest, ...) are checked by
:mod:`ckptspec.rules`, so that pydantic and any JSON Schema validator give the same verdict on
structure and every cross-field violation is reported as a finding with its own code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from ckptspec.types import (
    Extensions,
    FileDigest,
    Identifier,
    JSONValue,
    NonNegativeInt,
    PositiveInt,
    Rank,
    RelativePath,
    RunId,
    Sha256Hex,
    SpecVersion,
    StrictModel,
    Timestamp,
)

READABLE_VERSIONS: dict[int, int] = {1: 0, 2: 1}
"""Each major version this package reads, and the newest minor version of it that it knows (it
writes :data:`ckptspec.SPEC_VERSION`)."""

ComponentKind = Literal[
    "model",
    "optimizer",
    "lr_scheduler",
    "rng",
    "data_position",
    "grad_scaler",
    "trainer_state",
    "custom",
]
SharingPattern = Literal["replicated", "sharded", "per_rank", "per_group", "per_node"]
PayloadFormat = Literal["dcp", "safetensors", "torch_weights_only", "json", "raw"]

RESHARDABLE_FORMATS: frozenset[str] = frozenset({"dcp"})
"""Payload formats whose contents can be loaded at a different world size."""

RANK_LOCAL_PATTERNS: frozenset[str] = frozenset({"per_rank", "per_group", "per_node"})
"""Sharing patterns whose state belongs to a rank (or group of ranks) and cannot be resharded."""

GROUPED_PATTERNS: frozenset[str] = frozenset({"per_group", "per_node"})
"""Sharing patterns whose state belongs to a group of consecutive ranks, one file per group (MANIFEST-4)."""

REQUIRED_FINGERPRINT_KEYS: tuple[str, ...] = (
    "accumulation_steps",
    "global_batch_size",
    "dataset",
    "model",
)
"""Settings every config fingerprint must carry (MANIFEST-9)."""

RESUMABLE_KINDS: tuple[str, ...] = ("model", "optimizer", "rng", "data_position")
"""Component kinds every resumable checkpoint must contain (MANIFEST-6)."""


class _Model(StrictModel):
    model_config = ConfigDict(allow_inf_nan=False)


class Producer(_Model):
    """The software that wrote the checkpoint."""

    name: str = Field(
        min_length=1,
        max_length=128,
        description="Name of the trainer or library that wrote the checkpoint.",
    )
    version: str = Field(min_length=1, max_length=64, description="Version of that software.")
    torch_version: str | None = Field(
        default=None,
        max_length=64,
        description="`torch.__version__` of the writer, if it used PyTorch.",
    )


class MeshDim(_Model):
    """One dimension of the device mesh."""

    name: Identifier = Field(description="Dimension name, e.g. `dp_shard`.")
    size: PositiveInt = Field(description="Number of ranks along this dimension.")


class Topology(_Model):
    """The process group that wrote the checkpoint."""

    world_size: PositiveInt = Field(description="Number of ranks that wrote the checkpoint.")
    device_type: Identifier = Field(
        description="Device type the state lived on, e.g. `cpu` or `cuda`."
    )
    backend: Identifier | None = Field(
        default=None, description="Collective backend, e.g. `gloo` or `nccl`."
    )
    mesh: list[MeshDim] = Field(
        min_length=1,
        description="Device-mesh dimensions, outermost first; their sizes multiply to `world_size`.",
    )


class Progress(_Model):
    """Where training stood when the checkpoint was taken (always an optimizer-step boundary)."""

    global_step: NonNegativeInt = Field(
        description="Optimizer steps completed; equals the manifest's `step`."
    )
    epoch: NonNegativeInt = Field(description="Zero-based epoch the next sample is drawn from.")
    batches_in_epoch: NonNegativeInt = Field(
        description="Global batches (optimizer steps) already consumed in `epoch`."
    )
    samples_in_epoch: NonNegativeInt = Field(
        description="Samples already consumed in `epoch`, over all ranks."
    )
    samples_seen: NonNegativeInt = Field(
        description="Samples consumed since the start of the run, over all ranks."
    )
    accumulation_steps: PositiveInt = Field(
        description="Micro-batches accumulated per optimizer step."
    )


class ConfigFingerprint(_Model):
    """The settings that must not change across a resume, and their canonical digest."""

    values: dict[str, JSONValue] = Field(
        description="Fingerprinted settings by name; must include `accumulation_steps`, `global_batch_size`, `dataset` and `model`."
    )
    sha256: Sha256Hex = Field(
        description="The JSON digest of `values` as defined in the digest section (spec 2.0 and 1.x: the legacy version 1 JSON digest)."
    )


class FileEntry(_Model):
    """One payload file of a component."""

    path: RelativePath = Field(description="Path relative to the checkpoint directory.")
    size: NonNegativeInt = Field(description="Exact size in bytes.")
    digest: FileDigest = Field(
        description="Digest of the file's bytes, naming its algorithm (spec 1.x: `sha256`, the SHA-256 hex alone)."
    )
    ranks: list[Rank] = Field(
        min_length=1, description="Ranks that wrote (or contributed to) this file, ascending."
    )
    group: NonNegativeInt | None = Field(
        default=None,
        description="For `per_group` and `per_node` components: the index of the group the file belongs to.",
    )


class Component(_Model):
    """One piece of checkpointed state and the files that hold it."""

    name: Identifier = Field(description="Unique name of the component within the manifest.")
    kind: ComponentKind = Field(description="What the state is.")
    sharing: SharingPattern = Field(description="How the state is distributed over ranks.")
    format: PayloadFormat = Field(
        description="How the payload files are encoded; every format is loadable without executing code."
    )
    reshardable: bool = Field(
        description="Whether the state can be loaded at a different world size."
    )
    group_size: PositiveInt | None = Field(
        default=None, description="Ranks per group, for `per_group` and `per_node` components."
    )
    step_count: NonNegativeInt | None = Field(
        default=None,
        description="The optimizer step count stored in the payload, where the format exposes it.",
    )
    files: list[FileEntry] = Field(min_length=1, description="The component's payload files.")
    extensions: Extensions


class RankDigest(_Model):
    """The digest of a replicated component as one rank computed it."""

    rank: Rank
    sha256: Sha256Hex = Field(description="Canonical state digest of the component on that rank.")


class ReplicationCheck(_Model):
    """Digests of a replicated component compared across ranks at save time."""

    component: Identifier = Field(description="Name of the checked component.")
    digests: list[RankDigest] = Field(min_length=1, description="One digest per checked rank.")


class EvalResult(_Model):
    """Eval metrics taken at this step; absent when no evaluation ran or the eval set was empty."""

    metrics: dict[str, float] = Field(
        min_length=1, description="Global metric values by name (finite)."
    )
    samples: PositiveInt = Field(
        description="Number of eval samples the metrics were computed over."
    )


class ResumeRecord(_Model):
    """The checkpoint the writing run resumed from, if any."""

    step: NonNegativeInt = Field(description="Step of the checkpoint resumed from.")
    world_size: PositiveInt = Field(description="World size that checkpoint was written at.")
    elastic: bool = Field(description="Whether rank-local state was re-derived instead of loaded.")
    rederived: list[Identifier] = Field(
        default_factory=list, description="Components that were re-derived instead of loaded."
    )


class Manifest(_Model):
    """`manifest.json`: a complete description of one committed checkpoint."""

    spec_version: SpecVersion
    producer: Producer
    run_id: RunId
    step: NonNegativeInt = Field(
        description="Optimizer step the checkpoint was taken at; also encoded in the directory name."
    )
    created_at: Timestamp = Field(description="When the save started.")
    topology: Topology
    progress: Progress
    config: ConfigFingerprint
    components: list[Component] = Field(
        min_length=1, description="Every piece of state in the checkpoint."
    )
    replication: list[ReplicationCheck] = Field(
        default_factory=list, description="Cross-rank digests of replicated components, if checked."
    )
    eval: EvalResult | None = Field(
        default=None, description="Eval metrics at this step, if evaluated on a non-empty set."
    )
    resumable: bool = Field(
        description="Whether training can resume from this checkpoint; false for weights-only exports."
    )
    resumed_from: ResumeRecord | None = Field(
        default=None, description="The checkpoint the writing process resumed from, if any."
    )
    extensions: Extensions
