"""``ckptspec export CHECKPOINT OUT``: the model's full weights as safetensors, with a weights-only manifest.

The source checkpoint is validated first (``--deep``: every file's SHA-256); an invalid one is
refused with its findings (exit 1). The model component is read through the restricted DCP
reader (:func:`ckptspec.safe_dcp.safe_reader`, nothing is unpickled), unsharded into full
tensors on the CPU, and written by torch's own Hugging Face storage writer
(``torch.distributed.checkpoint.HuggingFaceStorageWriter``) as one safetensors file plus its
``model.safetensors.index.json``. The manifest lists both, declares ``resumable: false`` and
keeps the source's progress, config fingerprint and eval, and records the source checkpoint
under ``extensions["ckptspec.export"]``. Everything is written to a staging directory next to
``OUT`` and renamed into place at the end, so ``OUT`` either is complete or does not exist.

Peak memory is one full copy of the model's weights (the unsharded tensors) plus DCP's read
buffers; the optimizer state is never read. Exit status: 0 exported, 1 the source is not a
conformant checkpoint, 2 could not export (bad paths, no DCP model component, ``OUT`` exists).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

from ckptspec.diff_cmd import EXPORT_EXTENSION as EXTENSION_KEY
from ckptspec.exit_codes import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from ckptspec.findings import is_conformant

INDEX_FILE = "model.safetensors.index.json"
"""The tensor-to-file index that torch's Hugging Face writer puts next to the safetensors file."""


class ExportError(Exception):
    """The checkpoint cannot be exported (the message says what and where)."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``export``."""
    parser.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a committed checkpoint directory (step-*)"
    )
    parser.add_argument(
        "out",
        metavar="OUT",
        help="directory to create for the weights-only export (must not exist)",
    )


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the model weights of the (already validated) ``checkpoint`` to the new directory ``out``.

    Guarantees: ``out`` afterwards holds ``manifest.json``, one safetensors file and its index,
    and passes ``ckptspec validate --deep``; on any error ``out`` does not exist. Raises
    :class:`ExportError` for a checkpoint without a DCP ``model`` component or an existing ``out``.
    """
    import torch
    import torch.distributed.checkpoint as dcp

    from ckptspec import SPEC_VERSION
    from ckptspec.checkpointing.commit import PRODUCER
    from ckptspec.checkpointing.fsio import file_digest, fsync_path, write_durable
    from ckptspec.checkpointing.run_policy import utc_now
    from ckptspec.diff_cmd import load_dcp_state
    from ckptspec.documents import load_manifest
    from ckptspec.layout import LAYOUT
    from ckptspec.manifest import Component, FileEntry, Manifest, MeshDim, Topology

    source, target = Path(checkpoint), Path(out)
    if target.exists() or target.is_symlink():
        raise ExportError(f"{target}: already exists; export never overwrites")
    manifest, problems = load_manifest(str(source / LAYOUT.manifest_file))
    if manifest is None:
        raise ExportError(f"{source}: " + "; ".join(p.line() for p in problems))
    model = next((c for c in manifest.components if c.kind == "model"), None)
    if model is None or model.format != "dcp":
        raise ExportError(f"{source}: no `model` component in DCP format to export")
    directories = {Path(f.path).parts[0] for f in model.files}
    if len(directories) != 1:
        raise ExportError(f"{source}: DCP component {model.name!r} is not one directory")
    state = load_dcp_state(source / directories.pop())
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(
            f"{source}: component {model.name!r} holds non-tensor values; safetensors stores tensors only"
        )

    staging = target.with_name(f".{target.name}.export-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        with (
            warnings.catch_warnings()
        ):  # "assuming the intent is to save in a single process": it is
            warnings.simplefilter("ignore", UserWarning)
            dcp.save(state, storage_writer=dcp.HuggingFaceStorageWriter(str(staging)), no_dist=True)
        del state
        written = sorted(p.name for p in staging.iterdir())
        weights = [name for name in written if name.endswith(".safetensors")]
        if len(weights) != 1 or set(written) != {*weights, INDEX_FILE}:
            raise ExportError(
                f"torch's Hugging Face writer produced {written}, expected one safetensors file and {INDEX_FILE}"
            )

        def entry(name: str) -> FileEntry:  # SHA-256: an export is made to be handed on
            size, digest = file_digest(staging / name, "sha256")
            return FileEntry(path=name, size=size, digest=digest, ranks=[0])

        exported = Manifest(
            spec_version=SPEC_VERSION,
            producer=PRODUCER,
            run_id=manifest.run_id,
            step=manifest.step,
            created_at=utc_now(),
            topology=Topology(
                world_size=1, device_type="cpu", mesh=[MeshDim(name="dp_shard", size=1)]
            ),
            progress=manifest.progress,
            config=manifest.config,
            components=[
                Component(
                    name=model.name,
                    kind="model",
                    sharing="replicated",
                    format="safetensors",
                    reshardable=True,
                    files=[entry(weights[0])],
                ),
                Component(
                    name="model_index",
                    kind="custom",
                    sharing="replicated",
                    format="json",
                    reshardable=True,
                    files=[entry(INDEX_FILE)],
                ),
            ],
            eval=manifest.eval,
            resumable=False,
            extensions={
                EXTENSION_KEY: {
                    "source_run_id": manifest.run_id,
                    "source_step": manifest.step,
                    "source_manifest_sha256": manifest_sha256(source / LAYOUT.manifest_file),
                }
            },
        )
        write_durable(staging / LAYOUT.manifest_file, exported.model_dump_json(indent=2).encode())
        fsync_path(staging)
        staging.rename(target)
        fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def source_record(source: str | Path) -> dict[str, Any]:
    """What a run started with ``--init-from source`` records in its config fingerprint.

    ``manifest_sha256`` is the SHA-256 of the source's ``manifest.json``, which lists the digest
    of every weights file, so it identifies the exact weights. Raises
    :class:`~ckptspec.errors.NoCheckpointError` when ``source`` has no manifest.
    """
    from ckptspec.documents import load_manifest
    from ckptspec.errors import NoCheckpointError
    from ckptspec.layout import LAYOUT

    marker = Path(source) / LAYOUT.manifest_file
    try:
        manifest, problems = load_manifest(str(marker))
        marker_sha256 = manifest_sha256(marker)
    except OSError as exc:
        raise NoCheckpointError(
            f"--init-from {source}: cannot read {marker} ({exc.strerror or exc})"
        ) from None
    if manifest is None:
        raise NoCheckpointError(
            f"--init-from {source}: {marker} is not a valid manifest: {problems[0].line()}"
        )
    return {"manifest_sha256": marker_sha256, "run_id": manifest.run_id, "step": manifest.step}


def manifest_sha256(path: Path) -> str:
    """The SHA-256 (hex) of the manifest file at ``path``; raises ``OSError`` if it cannot be read."""
    from ckptspec.checkpointing.fsio import file_digest

    return file_digest(path, "sha256")[1].removeprefix("sha256:")


def run(args: argparse.Namespace) -> int:
    """Validate the source deeply, export it, and return the exit status."""
    from ckptspec.validator import CannotCheck, detect, validate_target

    try:
        kind = detect(args.checkpoint)
        if kind != "checkpoint":
            print(
                f"ckptspec export: {args.checkpoint}: a {kind.replace('_', ' ')}, not a checkpoint directory",
                file=sys.stderr,
            )
            return EXIT_ERROR
        findings = validate_target(args.checkpoint, kind, deep=True)
    except CannotCheck as exc:
        print(f"ckptspec export: cannot check {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not is_conformant(findings):
        sys.stdout.writelines(f.line() + "\n" for f in findings)
        print(
            f"ckptspec export: {args.checkpoint} is not a conformant checkpoint; nothing exported",
            file=sys.stderr,
        )
        return EXIT_FAIL
    from ckptspec.safe_dcp import UnsafeCheckpointError

    try:
        target = export_weights(args.checkpoint, args.out)
    except (ExportError, UnsafeCheckpointError, OSError) as exc:
        print(f"ckptspec export: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"exported {args.checkpoint} -> {target}")
    return EXIT_OK
