"""Reading torch.distributed.checkpoint (DCP) directories without executing their contents.

DCP stores its ``.metadata`` file as a pickle and non-tensor values through ``torch.save``.
Loading either with the standard unpickler would run arbitrary code from the checkpoint. Here
``.metadata`` is read by an unpickler that resolves only DCP's own metadata classes and a few
torch value types, and non-tensor values are read with ``torch.load(weights_only=True)``.
Anything else raises :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

DCP_METADATA_FILE = ".metadata"

_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("torch.distributed.checkpoint.metadata", name)
        for name in (
            "Metadata",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "TensorProperties",
            "MetadataIndex",
            "StorageMeta",
            "_MEM_FORMAT_ENCODING",
        )
    }
    | {
        ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
        ("torch.distributed.checkpoint.filesystem", "_StoragePrefix"),
        ("torch.distributed.checkpoint._extension", "ExtensionRegistry"),
        ("torch", "Size"),
        ("torch.serialization", "_get_layout"),  # looks a layout up by name
        ("torch", "strided"),
        ("torch", "contiguous_format"),
        ("torch", "preserve_format"),
        ("collections", "OrderedDict"),
        ("pathlib", "PosixPath"),  # StorageMeta.checkpoint_id
        ("pathlib", "PurePosixPath"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
    }
)
_DTYPE_NAMES: frozenset[str] = frozenset(
    {
        "float64", "float32", "float16", "bfloat16", "complex128", "complex64", "complex32",
        "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool",
        "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
    }
)


class UnsafeCheckpointError(Exception):
    """A DCP file refers to something outside the allow-list, or is not a DCP file at all."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS or (module == "torch" and name in _DTYPE_NAMES):
            return super().find_class(module, name)
        raise UnsafeCheckpointError(f"DCP metadata refers to {module}.{name}, which is not on the allow-list")


def read_dcp_metadata(checkpoint_dir: str | os.PathLike[str]) -> Any:
    """The ``Metadata`` object of a DCP directory, unpickled with the restricted unpickler.

    Raises :class:`UnsafeCheckpointError` for a metadata file that is not a DCP metadata pickle,
    and ``OSError`` when it cannot be read.
    """
    path = Path(checkpoint_dir) / DCP_METADATA_FILE
    with open(path, "rb") as f:
        try:
            metadata = _RestrictedUnpickler(f).load()
        except UnsafeCheckpointError:
            raise
        except Exception as exc:  # any malformed pickle: truncated, wrong opcodes, ...
            raise UnsafeCheckpointError(f"{path}: not a readable DCP metadata file ({exc})") from None
    from torch.distributed.checkpoint.metadata import Metadata

    if not isinstance(metadata, Metadata):
        raise UnsafeCheckpointError(f"{path}: holds {type(metadata).__name__}, not DCP Metadata")
    return metadata


def safe_reader(checkpoint_dir: str | os.PathLike[str]) -> Any:
    """A ``FileSystemReader`` for ``checkpoint_dir`` whose metadata is read with the restricted unpickler."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class _SafeFileSystemReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            metadata = read_dcp_metadata(self.path)
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return _SafeFileSystemReader(checkpoint_dir)


def safe_planner(**kwargs: Any) -> Any:
    """A ``DefaultLoadPlanner`` that reads non-tensor values with ``torch.load(weights_only=True)``."""
    import torch
    from torch.distributed.checkpoint import DefaultLoadPlanner
    from torch.distributed.checkpoint._traverse import set_element

    class _SafeLoadPlanner(DefaultLoadPlanner):
        def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
            obj = torch.load(value, weights_only=True)
            if self.flatten_state_dict:
                set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], obj)
            else:
                self.state_dict[read_item.dest_index.fqn] = obj

    return _SafeLoadPlanner(**kwargs)
