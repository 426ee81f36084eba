"""Cross-field rules of spec version 1, as functions over parsed models (rule stage).

Each rule checks one requirement, yields findings with a registered code, and never raises on
a structurally valid model. The structural models carry no validators of their own, so that
pydantic and the generated JSON Schema agree on structure, and every violation found here is a
finding with its own code rather than a schema error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from ckptspec.digest import json_digest, json_digest_v1
from ckptspec.findings import Finding, finding, json_pointer
from ckptspec.layout import LAYOUT
from ckptspec.manifest import (
    GROUPED_PATTERNS,
    RANK_LOCAL_PATTERNS,
    REQUIRED_FINGERPRINT_KEYS,
    RESHARDABLE_FORMATS,
    RESUMABLE_KINDS,
    Manifest,
)
from ckptspec.run_index import RunIndex

ManifestRule = Callable[[Manifest, str], Iterator[Finding]]
RunIndexRule = Callable[[RunIndex, str], Iterator[Finding]]


def _ranks(ranks: set[int] | list[int], limit: int = 8) -> str:
    ordered = sorted(ranks)
    shown = ", ".join(map(str, ordered[:limit]))
    return shown + (f" and {len(ordered) - limit} more" if len(ordered) > limit else "")


def _missing(count: int, covered: set[int], limit: int = 8) -> str:
    """The numbers of ``range(count)`` not in ``covered``, described like :func:`_ranks`, in time
    and memory bounded by ``len(covered)`` (never by ``count``, which a document may set to 10**300)."""
    present = sum(1 for n in covered if 0 <= n < count)
    first: list[int] = []
    n = 0
    while len(first) < limit and n < count:  # at most len(covered) + limit iterations
        if n not in covered:
            first.append(n)
        n += 1
    more = count - present - len(first)
    return ", ".join(map(str, first)) + (f" and {more} more" if more > 0 else "")


def step_matches_progress(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-3: ``step`` equals ``progress.global_step``."""
    if m.step != m.progress.global_step:
        yield finding(
            "STEP_MISMATCH",
            path,
            f"step is {m.step} but progress.global_step is {m.progress.global_step}",
            json_pointer("progress", "global_step"),
        )


def accumulation_matches_fingerprint(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-3: ``progress.accumulation_steps`` equals the fingerprinted value, where one is recorded."""
    if "accumulation_steps" not in m.config.values:
        return  # reported by fingerprint_has_required_keys
    recorded = m.config.values["accumulation_steps"]
    if (
        isinstance(recorded, bool) or recorded != m.progress.accumulation_steps
    ):  # 2.0 counts as 2; true does not
        yield finding(
            "ACCUMULATION_MISMATCH",
            path,
            f"progress.accumulation_steps is {m.progress.accumulation_steps} but the fingerprint records {recorded!r}",
            json_pointer("progress", "accumulation_steps"),
        )


def per_rank_components_cover_world(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-4: a ``per_rank`` component has files of its own for every rank of the world."""
    world = m.topology.world_size
    for ci, c in enumerate(m.components):
        if c.sharing != "per_rank":
            continue
        for fi, f in enumerate(c.files):
            if len(f.ranks) != 1:
                yield finding(
                    "PER_RANK_COVERAGE",
                    path,
                    f"component {c.name!r}: file {f.path!r} is written by ranks {_ranks(f.ranks)}; a per_rank file belongs to one rank",
                    json_pointer("components", ci, "files", fi, "ranks"),
                )
        covered = {f.ranks[0] for f in c.files if len(f.ranks) == 1}
        if sum(1 for r in covered if r < world) < world:
            yield finding(
                "PER_RANK_COVERAGE",
                path,
                f"component {c.name!r} has no file for rank(s) {_missing(world, covered)} of world size {world}",
                json_pointer("components", ci),
            )


def grouped_components_cover_groups(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-4: a ``per_group``/``per_node`` component has a ``group_size`` dividing the world and files for every group."""
    world = m.topology.world_size
    for ci, c in enumerate(m.components):
        if c.sharing not in GROUPED_PATTERNS:
            continue
        where = json_pointer("components", ci)
        if c.group_size is None or world % c.group_size:
            yield finding(
                "GROUP_COVERAGE",
                path,
                f"component {c.name!r} ({c.sharing}) needs a group_size dividing world size {world}, has {c.group_size}",
                where,
            )
            continue
        groups = world // c.group_size
        covered: set[int] = set()
        for fi, f in enumerate(c.files):
            g = f.group
            if g is None or g >= groups or any(r // c.group_size != g for r in f.ranks):
                yield finding(
                    "GROUP_COVERAGE",
                    path,
                    f"component {c.name!r}: file {f.path!r} has group {g}, which is not a group of {groups} whose ranks wrote it",
                    json_pointer("components", ci, "files", fi),
                )
            else:
                covered.add(g)
        if len(covered) < groups:  # every covered group is < groups
            yield finding(
                "GROUP_COVERAGE",
                path,
                f"component {c.name!r} has no file for group(s) {_missing(groups, covered)}",
                where,
            )


def sharded_components_are_reshardable(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-5: ``sharded`` components use a reshardable format and say so; rank-local ones say they are not."""
    for ci, c in enumerate(m.components):
        if c.sharing == "sharded" and c.format not in RESHARDABLE_FORMATS:
            yield finding(
                "SHARDED_FORMAT",
                path,
                f"component {c.name!r} is sharded but its format {c.format!r} cannot be resharded (use {', '.join(sorted(RESHARDABLE_FORMATS))})",
                json_pointer("components", ci, "format"),
            )
        if c.sharing == "sharded" and not c.reshardable:
            yield finding(
                "RESHARDABLE_FLAG",
                path,
                f"component {c.name!r} is sharded but declares reshardable: false",
                json_pointer("components", ci, "reshardable"),
            )
        if c.sharing in RANK_LOCAL_PATTERNS and c.reshardable:
            yield finding(
                "RESHARDABLE_FLAG",
                path,
                f"component {c.name!r} is {c.sharing} (rank-local) but declares reshardable: true",
                json_pointer("components", ci, "reshardable"),
            )


def resumable_is_complete(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-6: a resumable checkpoint has model, optimizer, rng and data_position; a weights-only export is not resumable."""
    if not m.resumable:
        return
    kinds = {c.kind for c in m.components}
    missing = [k for k in RESUMABLE_KINDS if k not in kinds]
    if missing:
        hint = (
            " (a weights-only export must declare resumable: false)"
            if "optimizer" in missing
            else ""
        )
        yield finding(
            "RESUMABLE_INCOMPLETE",
            path,
            f"resumable: true but no component of kind {', '.join(missing)}{hint}",
            json_pointer("resumable"),
        )


def mesh_matches_world_size(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-8: the mesh dimension sizes multiply to the world size."""
    world, product = m.topology.world_size, 1
    for d in m.topology.mesh:
        product *= d.size
        if product > world:  # stop before the product grows past the document's own numbers
            break
    if product != world:
        dims = " x ".join(f"{d.name}={d.size}" for d in m.topology.mesh[:8]) + (
            " x ..." if len(m.topology.mesh) > 8 else ""
        )
        ranks = f"more than {world}" if product > world else str(product)
        yield finding(
            "MESH_WORLD_SIZE",
            path,
            f"mesh {dims} has {ranks} ranks but world_size is {world}",
            json_pointer("topology", "mesh"),
        )


def ranks_within_world(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-8: every rank named by a file or a replication digest is in ``[0, world_size)``."""
    world = m.topology.world_size
    for ci, c in enumerate(m.components):
        for fi, f in enumerate(c.files):
            outside = [r for r in f.ranks if r >= world]
            if outside:
                yield finding(
                    "RANK_OUT_OF_RANGE",
                    path,
                    f"file {f.path!r} names rank(s) {_ranks(outside)} outside world size {world}",
                    json_pointer("components", ci, "files", fi, "ranks"),
                )
    for qi, check in enumerate(m.replication):
        outside = [d.rank for d in check.digests if d.rank >= world]
        if outside:
            yield finding(
                "RANK_OUT_OF_RANGE",
                path,
                f"replication check of {check.component!r} names rank(s) {_ranks(outside)} outside world size {world}",
                json_pointer("replication", qi),
            )


def fingerprint_has_required_keys(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-9: the fingerprint records every required setting."""
    missing = [k for k in REQUIRED_FINGERPRINT_KEYS if k not in m.config.values]
    if missing:
        yield finding(
            "FINGERPRINT_KEYS",
            path,
            f"config fingerprint lacks {', '.join(missing)}",
            json_pointer("config", "values"),
        )


def uses_legacy_json_digest(spec_version: str) -> bool:
    """Whether a document of ``spec_version`` (``MAJOR.MINOR``) carries the version 1 JSON digest:
    spec 1.x and 2.0 did; 2.1 and later carry the RFC 8785 one (compared as digit strings, so a
    version of any length is never converted)."""
    major, _, minor = (part.lstrip("0") or "0" for part in spec_version.partition("."))
    return major == "1" or (major == "2" and minor == "0")


def fingerprint_digest_matches(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-9: the fingerprint's ``sha256`` is the JSON digest of its values, in the canonical
    form of the manifest's version."""
    digest = json_digest_v1 if uses_legacy_json_digest(m.spec_version) else json_digest
    try:
        expected = digest(m.config.values)
    except ValueError as exc:  # NaN or infinity in a model built in Python
        yield finding(
            "FINGERPRINT_DIGEST",
            path,
            f"config values have no canonical digest: {exc}",
            json_pointer("config", "values"),
        )
        return
    if expected != m.config.sha256:
        yield finding(
            "FINGERPRINT_DIGEST",
            path,
            f"config.sha256 is {m.config.sha256} but the JSON digest of config.values is {expected}",
            json_pointer("config", "sha256"),
        )


def names_and_files_unique(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-10: component names are unique and each file path is listed once."""
    for name, count in Counter(c.name for c in m.components).items():
        if count > 1:
            yield finding(
                "DUPLICATE_COMPONENT",
                path,
                f"{count} components are named {name!r}",
                json_pointer("components"),
            )
    owners: dict[str, str] = {}
    for ci, c in enumerate(m.components):
        for fi, f in enumerate(c.files):
            if f.path == LAYOUT.manifest_file or f.path in owners:
                first = (
                    "the manifest itself"
                    if f.path == LAYOUT.manifest_file
                    else f"component {owners[f.path]!r}"
                )
                yield finding(
                    "DUPLICATE_FILE",
                    path,
                    f"file {f.path!r} of component {c.name!r} is already listed by {first}",
                    json_pointer("components", ci, "files", fi, "path"),
                )
            else:
                owners[f.path] = c.name


def replication_checks_agree(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-11: each replication check names a component, lists each rank once, and its digests agree."""
    names = {c.name for c in m.components}
    for qi, check in enumerate(m.replication):
        where = json_pointer("replication", qi)
        if check.component not in names:
            yield finding(
                "REPLICATION_INVALID",
                path,
                f"replication check names unknown component {check.component!r}",
                where,
            )
        repeated = [r for r, n in Counter(d.rank for d in check.digests).items() if n > 1]
        if repeated:
            yield finding(
                "REPLICATION_INVALID",
                path,
                f"replication check of {check.component!r} lists rank(s) {_ranks(repeated)} more than once",
                where,
            )
        if len({d.sha256 for d in check.digests}) > 1:
            by_digest: dict[str, list[int]] = {}
            for d in check.digests:
                by_digest.setdefault(d.sha256, []).append(d.rank)
            groups = "; ".join(f"ranks {_ranks(r)}: {h[:12]}..." for h, r in by_digest.items())
            yield finding(
                "REPLICATION_MISMATCH",
                path,
                f"replicated component {check.component!r} differs across ranks ({groups})",
                where,
            )


def step_counts_match(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-12: a recorded optimizer ``step_count`` equals ``progress.global_step``."""
    for ci, c in enumerate(m.components):
        if c.step_count is not None and c.step_count != m.progress.global_step:
            yield finding(
                "STEP_COUNT_MISMATCH",
                path,
                f"component {c.name!r} records step_count {c.step_count} but progress.global_step is {m.progress.global_step}",
                json_pointer("components", ci, "step_count"),
            )


def resume_record_consistent(m: Manifest, path: str) -> Iterator[Finding]:
    """MANIFEST-13: ``resumed_from`` is consistent with itself, the components and the topology."""
    r = m.resumed_from
    if r is None:
        return
    where = json_pointer("resumed_from")
    if r.step > m.step:
        yield finding(
            "RESUME_RECORD",
            path,
            f"resumed from step {r.step}, later than this checkpoint's step {m.step}",
            where,
        )
    if r.elastic != bool(r.rederived):
        detail = (
            "elastic: true but no component is listed as rederived"
            if r.elastic
            else f"elastic: false but components {', '.join(r.rederived)} are listed as rederived"
        )
        yield finding("RESUME_RECORD", path, detail, where)
    unknown = sorted(set(r.rederived) - {c.name for c in m.components})
    if unknown:
        yield finding(
            "RESUME_RECORD",
            path,
            f"rederived names unknown component(s) {', '.join(unknown)}",
            where,
        )
    rank_local = sorted(c.name for c in m.components if c.sharing in RANK_LOCAL_PATTERNS)
    if r.world_size != m.topology.world_size and not r.elastic and rank_local:
        yield finding(
            "RESUME_RECORD",
            path,
            f"resumed from world size {r.world_size} at world size {m.topology.world_size} with rank-local component(s) "
            f"{', '.join(rank_local)}, but the resume is not recorded as elastic",
            where,
        )


def best_record_complete(index: RunIndex, path: str) -> Iterator[Finding]:
    """RUN-3: the best record's ``step`` and ``score`` are both set or both null."""
    best = index.best
    if best is not None and (best.step is None) != (best.score is None):
        yield finding(
            "BEST_RECORD_INCOMPLETE",
            path,
            f"best.step is {best.step} but best.score is {best.score}",
            json_pointer("best"),
        )


def rewind_records_consistent(index: RunIndex, path: str) -> Iterator[Finding]:
    """RUN-6: each rewind moved later steps into ``.rewound/<fork id>`` and fork ids are unique."""
    seen: set[str] = set()
    for wi, w in enumerate(index.rewinds):
        where = json_pointer("rewinds", wi)
        expected_dir = f"{LAYOUT.rewound_dir}/{w.fork_id}"
        if w.moved_to != expected_dir:
            yield finding(
                "REWIND_RECORD",
                path,
                f"fork {w.fork_id!r} moved_to is {w.moved_to!r}, expected {expected_dir!r}",
                where,
            )
        if w.fork_id in seen:
            yield finding("REWIND_RECORD", path, f"fork id {w.fork_id!r} is used twice", where)
        seen.add(w.fork_id)
        steps = w.discarded_steps
        if steps != sorted(set(steps)):
            yield finding(
                "REWIND_RECORD",
                path,
                f"fork {w.fork_id!r} discarded_steps are not strictly ascending",
                where,
            )
        if min(steps) <= w.resumed_from_step:
            yield finding(
                "REWIND_RECORD",
                path,
                f"fork {w.fork_id!r} discards step {min(steps)}, not after resumed_from_step {w.resumed_from_step}",
                where,
            )


MANIFEST_RULES: tuple[ManifestRule, ...] = (
    step_matches_progress,
    accumulation_matches_fingerprint,
    per_rank_components_cover_world,
    grouped_components_cover_groups,
    sharded_components_are_reshardable,
    resumable_is_complete,
    mesh_matches_world_size,
    ranks_within_world,
    fingerprint_has_required_keys,
    fingerprint_digest_matches,
    names_and_files_unique,
    replication_checks_agree,
    step_counts_match,
    resume_record_consistent,
)
"""Every cross-field rule over a manifest, in report order."""

RUN_INDEX_RULES: tuple[RunIndexRule, ...] = (best_record_complete, rewind_records_consistent)
"""Every cross-field rule over a run index, in report order."""


def check_manifest_rules(m: Manifest, path: str) -> list[Finding]:
    """The findings of every manifest rule; ``path`` names the manifest in them."""
    return [f for rule in MANIFEST_RULES for f in rule(m, path)]


def check_run_index_rules(index: RunIndex, path: str) -> list[Finding]:
    """The findings of every run-index rule; ``path`` names the run index in them."""
    return [f for rule in RUN_INDEX_RULES for f in rule(index, path)]
