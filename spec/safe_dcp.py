"""Reading torch.distributed.checkpoint (DCP) directories without executing their contents.

DCP stores its ``.metadata`` file as a pickle and non-tensor values through ``torch.save``.
Loading either with the standard unpickler would run arbitrary code from the checkpoint. Here
``.metadata`` is read by an unpickler that resolves only DCP's own metadata classes and a few
torch value types, and non-tensor values are read with ``torch.load(weights_only=True)``.
Anything else raises :class:`UnsafeCheckpointError`.

The unpickler is also bounded by the size of its input (see the *Limits* section of
``docs/validator.md``): the file is read up to :data:`MAX_METADATA_BYTES`; the memo is a
dictionary, so a memo index costs nothing until it is used; a memo reference may only share
immutable scalars (strings, numbers, classes, dtypes, enum members, ``torch.Size``), never a
container or an object, so the object graph is a tree whose size is bounded by the file's;
arguments copied by constructors are charged to a budget proportional to the file size; tuples
nest at most :data:`MAX_TUPLE_NESTING` deep; ``BUILD`` only sets fields of allow-listed DCP
objects. After unpickling, :func:`check_metadata` requires the ``Metadata`` to have the shape
torch writes, so later readers never meet a list where a dict belongs.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import posixpath
import stat
from collections.abc import Generator, Mapping
from enum import Enum
from pathlib import Path
from types import BuiltinFunctionType, FunctionType, MethodType
from typing import Any, NoReturn

from ckptspec.file_digest import verified_file

DCP_METADATA_FILE = ".metadata"

MAX_METADATA_BYTES = 256 * 1024 * 1024
"""Largest `.metadata` file read; a larger one is refused before any of it is unpickled."""

MAX_TUPLE_NESTING = 64
"""Deepest nesting of tuples in a metadata pickle (DCP's own nest at most 3 deep)."""

MAX_DIM = 2**63 - 1
"""Largest tensor dimension, offset or length accepted (an ``int64``, as torch stores them)."""

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
        "float64",
        "float32",
        "float16",
        "bfloat16",
        "complex128",
        "complex64",
        "complex32",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool",
        "float8_e4m3fn",
        "float8_e5m2",
        "float8_e4m3fnuz",
        "float8_e5m2fnuz",
        "float8_e8m0fnu",
    }
)
_DCP_MODULE_PREFIX = "torch.distributed.checkpoint."


class UnsafeCheckpointError(Exception):
    """A DCP file refers to something outside the allow-list, exceeds a limit, or is not a DCP file at all."""


def _refuse(message: str) -> NoReturn:
    raise UnsafeCheckpointError(message)


class _RestrictedUnpickler(
    pickle._Unpickler
):  # the Python unpickler: its opcodes can be bounded one by one
    """Resolves only allow-listed globals, and keeps the object graph a tree bounded by the input size."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self._copy_budget = 2 * len(data) + 65536
        self._tuple_depth: dict[
            int, tuple[tuple[Any, ...], int]
        ] = {}  # keeps the tuple alive, so its id stays its own
        self._dcp_types: set[type] = set()
        import torch

        self._size = torch.Size
        self._shareable = (
            str,
            bytes,
            int,
            float,
            type(None),
            type,
            FunctionType,
            MethodType,
            BuiltinFunctionType,
            Enum,
            torch.dtype,
            torch.layout,
            torch.memory_format,
            torch.Size,
        )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("builtins", "getattr"):
            return (
                self._enum_member
            )  # Python < 3.11.3 pickles Enum members as getattr(EnumClass, "NAME")
        if (module, name) in _ALLOWED_GLOBALS or (module == "torch" and name in _DTYPE_NAMES):
            found = super().find_class(module, name)
            if isinstance(found, type) and module.startswith(_DCP_MODULE_PREFIX):
                self._dcp_types.add(found)
            return found
        _refuse(f"DCP metadata refers to {module}.{name}, which is not on the allow-list")

    def _enum_member(self, cls: Any, name: Any) -> Enum:
        if not (isinstance(cls, type) and issubclass(cls, Enum) and cls in self._dcp_types):
            _refuse(
                f"DCP metadata applies getattr to {cls!r:.80}, which is not an allow-listed Enum class"
            )
        if not (isinstance(name, str) and name in cls.__members__):
            _refuse(f"DCP metadata names {name!r:.80}, which is not a member of {cls.__name__}")
        return cls.__members__[name]

    def _get(self, index: int) -> None:
        try:
            value = self.memo[index]
        except KeyError:
            _refuse(f"DCP metadata refers to memo entry {index}, which was never stored")
        if not isinstance(value, self._shareable) or (
            isinstance(value, tuple) and not isinstance(value, self._size)
        ):
            _refuse(
                f"DCP metadata shares a {type(value).__name__} through the pickle memo; DCP metadata shares only scalars"
            )
        self.append(value)

    def _charge(self, values: Any) -> None:
        for value in values:
            if isinstance(value, (str, bytes, tuple, list, dict, set, frozenset)):
                self._copy_budget -= len(value)
        if self._copy_budget < 0:
            _refuse(
                "DCP metadata copies more data than its size allows (a pickle that amplifies itself)"
            )

    def _tuple(self, items: tuple[Any, ...]) -> tuple[Any, ...]:
        depth = 1
        for item in items:
            if type(item) is tuple:
                known = self._tuple_depth.get(id(item))
                depth = max(depth, 1 + (known[1] if known else 1))
        if depth > MAX_TUPLE_NESTING:
            _refuse(f"DCP metadata nests tuples deeper than {MAX_TUPLE_NESTING} levels")
        if depth > 1:
            self._tuple_depth[id(items)] = (items, depth)
        return items

    def _load_tuple(self) -> None:
        items = tuple(self.pop_mark())  # before self.append is looked up: pop_mark replaces it
        self.append(self._tuple(items))

    def _load_tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            _refuse("DCP metadata builds a tuple from an empty stack")
        items = tuple(self.stack[-n:])
        del self.stack[-n:]
        self.append(self._tuple(items))

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self._charge(args if isinstance(args, tuple) else ())
        self.stack[-1] = self.stack[-1](*args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        self._charge(args if isinstance(args, tuple) else ())
        cls = self.stack.pop()
        self.append(cls.__new__(cls, *args))

    def _load_build(self) -> None:
        inst = self.stack[-2] if len(self.stack) >= 2 else None  # below the state
        if type(inst) not in self._dcp_types:
            _refuse(
                f"DCP metadata sets the state of a {type(inst).__name__}, which is not a DCP metadata object"
            )
        super().load_build()

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.GET[0]] = lambda self: self._get(int(self.readline()[:-1]))
    dispatch[pickle.BINGET[0]] = lambda self: self._get(self.read(1)[0])
    dispatch[pickle.LONG_BINGET[0]] = lambda self: self._get(int.from_bytes(self.read(4), "little"))
    dispatch[pickle.TUPLE[0]] = _load_tuple
    dispatch[pickle.TUPLE1[0]] = lambda self: self._load_tuple_n(1)
    dispatch[pickle.TUPLE2[0]] = lambda self: self._load_tuple_n(2)
    dispatch[pickle.TUPLE3[0]] = lambda self: self._load_tuple_n(3)
    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = lambda self: _refuse(
        "DCP metadata uses NEWOBJ_EX, which DCP never writes"
    )
    dispatch[pickle.BUILD[0]] = _load_build
    for _opcode in (
        pickle.INST,
        pickle.OBJ,
        pickle.PERSID,
        pickle.BINPERSID,
        pickle.EXT1,
        pickle.EXT2,
        pickle.EXT4,
    ):
        dispatch[_opcode[0]] = lambda self, _name=_opcode: _refuse(
            f"DCP metadata uses pickle opcode {_name!r}, which DCP never writes"
        )
    del _opcode


def read_metadata_bytes(path: str | os.PathLike[str], max_bytes: int = MAX_METADATA_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (not a link, FIFO or device), at most ``max_bytes`` of them.

    Raises :class:`UnsafeCheckpointError` when it is larger or not a regular file, ``OSError``
    when it cannot be read. Opening never blocks (``O_NONBLOCK``) and never follows a link.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            _refuse(f"{path}: not a regular file")
        if st.st_size > max_bytes:
            _refuse(
                f"{path}: {st.st_size} bytes, more than the {max_bytes}-byte limit for DCP metadata"
            )
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        _refuse(f"{path}: more than the {max_bytes}-byte limit for DCP metadata")
    return data


def unpickle_metadata(data: bytes, where: str = DCP_METADATA_FILE) -> Any:
    """The DCP ``Metadata`` pickled in ``data``, unpickled with the restricted unpickler and shape-checked.

    Raises :class:`UnsafeCheckpointError` for anything that is not DCP metadata of the shape torch
    writes (``where`` names the file in the message); nothing outside the allow-list is called.
    """
    try:
        metadata = _RestrictedUnpickler(data).load()
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"{where}: {exc}") from None
    except Exception as exc:  # any malformed pickle: truncated, wrong opcodes, ...
        raise UnsafeCheckpointError(
            f"{where}: not a readable DCP metadata file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    check_metadata(metadata, where)
    return metadata


def read_dcp_metadata(checkpoint_dir: str | os.PathLike[str]) -> Any:
    """The ``Metadata`` object of a DCP directory, unpickled with the restricted unpickler.

    Raises :class:`UnsafeCheckpointError` for a metadata file that is not a DCP metadata pickle
    (or exceeds a limit), and ``OSError`` when it cannot be read.
    """
    path = Path(checkpoint_dir) / DCP_METADATA_FILE
    return unpickle_metadata(read_metadata_bytes(path), str(path))


def _is_dim_tuple(value: Any, length: int | None = None) -> bool:
    return (
        isinstance(value, tuple)
        and (length is None or len(value) == length)
        and all(type(v) is int and 0 <= v <= MAX_DIM for v in value)
    )


def _check_tensor(key: str, item: Any, where: str) -> None:
    import torch
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, TensorProperties

    name = f"{where}: state_dict_metadata[{key!r:.120}]"
    properties = getattr(item, "properties", None)
    if not isinstance(properties, TensorProperties) or not isinstance(
        getattr(properties, "dtype", None), torch.dtype
    ):
        _refuse(f"{name}.properties is not TensorProperties with a torch dtype")
    size = getattr(item, "size", None)
    if not _is_dim_tuple(size):
        _refuse(f"{name}.size is a {type(size).__name__}, not a tuple of integers in [0, 2**63)")
    chunks = getattr(item, "chunks", None)
    if not isinstance(chunks, list):
        _refuse(f"{name}.chunks is a {type(chunks).__name__}, not a list")
    for chunk in chunks:
        offsets, sizes = getattr(chunk, "offsets", None), getattr(chunk, "sizes", None)
        if (
            not isinstance(chunk, ChunkStorageMetadata)
            or not _is_dim_tuple(offsets, len(size))
            or not _is_dim_tuple(sizes, len(size))
        ):
            _refuse(
                f"{name} has a chunk that is not offsets and sizes of {len(size)} integers each"
            )
        if any(o + s > d for o, s, d in zip(offsets, sizes, size)):
            _refuse(
                f"{name} has a chunk at {tuple(offsets)} of {tuple(sizes)} outside the tensor's size {tuple(size)}"
            )


def is_confined_relative(path: str) -> bool:
    """Whether ``path`` is a relative, normalised POSIX path that stays inside its directory."""
    return (
        path not in ("", ".", "..")
        and "\\" not in path
        and "\0" not in path
        and not posixpath.isabs(path)
        and posixpath.normpath(path) == path
        and not path.startswith("../")
    )


def check_metadata(metadata: Any, where: str = DCP_METADATA_FILE) -> None:
    """Require ``metadata`` to be a DCP ``Metadata`` of the shape torch writes.

    Every key is a string, every value a tensor or bytes storage description with integer sizes
    and chunks inside the tensor, and every storage entry a relative, normalised path inside the
    directory with integer offset and length. Raises :class:`UnsafeCheckpointError` naming the
    first value that is not.
    """
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (
        BytesStorageMetadata,
        Metadata,
        MetadataIndex,
        TensorStorageMetadata,
    )

    if not isinstance(metadata, Metadata):
        _refuse(f"{where}: holds {type(metadata).__name__}, not DCP Metadata")
    state = getattr(metadata, "state_dict_metadata", None)
    if not isinstance(state, dict):
        _refuse(f"{where}: state_dict_metadata is a {type(state).__name__}, not a dict")
    for key, item in state.items():
        if not isinstance(key, str):
            _refuse(f"{where}: state_dict_metadata has a key of type {type(key).__name__}, not str")
        if isinstance(item, TensorStorageMetadata):
            _check_tensor(key, item, where)
        elif not isinstance(item, BytesStorageMetadata):
            _refuse(
                f"{where}: state_dict_metadata[{key!r:.120}] is a {type(item).__name__}, not a tensor or bytes storage description"
            )
    storage = getattr(metadata, "storage_data", None)
    if storage is None:
        return
    if not isinstance(storage, dict):
        _refuse(f"{where}: storage_data is a {type(storage).__name__}, not a dict")
    for index, info in storage.items():
        if not isinstance(index, MetadataIndex) or not isinstance(getattr(index, "fqn", None), str):
            _refuse(
                f"{where}: storage_data has a key of type {type(index).__name__}, not MetadataIndex"
            )
        relative, offset, length = (
            getattr(info, a, None) for a in ("relative_path", "offset", "length")
        )
        if (
            not isinstance(info, _StorageInfo)
            or not isinstance(relative, str)
            or type(offset) is not int
            or type(length) is not int
        ):
            _refuse(
                f"{where}: storage_data[{index.fqn!r:.120}] is not a storage entry (relative path, integer offset and length)"
            )
        if not is_confined_relative(relative):
            _refuse(
                f"{where}: storage_data[{index.fqn!r:.120}] names {relative!r:.120}, which is not a relative path inside the directory"
            )
        if not (0 <= offset <= MAX_DIM and 0 <= length <= MAX_DIM):
            _refuse(
                f"{where}: storage_data[{index.fqn!r:.120}] has offset {offset} and length {length} outside [0, 2**63)"
            )


def safe_reader(
    checkpoint_dir: str | os.PathLike[str],
    expected: Mapping[str, tuple[int, str]] | None = None,
    *,
    defer_copies: bool = False,
) -> Any:
    """A ``FileSystemReader`` for ``checkpoint_dir`` whose metadata is read with the restricted unpickler.

    With ``expected`` (file name in the directory -> listed size and digest), every file the
    reader opens is read once, whole, and checked against its listed size and digest before any
    of its bytes are used; a file that is not listed, or does not match, raises
    :class:`~ckptspec.file_digest.DigestMismatchError`. The load's data is then served from the
    verified bytes, so nothing is read twice; the verified metadata is kept, so that a caller may
    call ``read_metadata()`` first (DCP reports a failure there only as text) and DCP reuses it.

    With ``defer_copies``, a load reads every item it needs (as DCP's own reader does) but copies
    nothing into the destination state dict: the reader's ``apply()`` does that later. A caller
    can so read and verify several components on every rank (a failed read raises on every rank
    from ``dcp.load``) before any destination tensor, which may be live state, changes.
    """
    import torch
    from torch.distributed._shard._utils import narrow_tensor_by_index
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.filesystem import FileSystem
    from torch.distributed.checkpoint.metadata import StorageMeta
    from torch.distributed.checkpoint.planner import LoadItemType
    from torch.futures import Future

    class _VerifyingFileSystem(FileSystem):
        def __init__(self, listed: Mapping[str, tuple[int, str]]) -> None:
            super().__init__()
            self.listed = listed

        @contextlib.contextmanager
        def create_stream(
            self, path: str | os.PathLike[str], mode: str
        ) -> Generator[Any, None, None]:
            if mode != "rb":
                raise ValueError(f"{path}: a checkpoint is read-only here (mode {mode!r})")
            with verified_file(path, self.listed.get(Path(path).name)) as stream:
                yield stream

    class _SafeFileSystemReader(FileSystemReader):
        def __init__(self, path: str | os.PathLike[str]) -> None:
            super().__init__(path)
            self.verified_metadata: Any = None  # with ``expected``: read once, then reused
            self.deferred: list[
                tuple[Any, Any, Any]
            ] = []  # with ``defer_copies``: (planner, item, value)

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            path = Path(self.path) / DCP_METADATA_FILE
            if expected is None:
                metadata = read_dcp_metadata(self.path)
            elif self.verified_metadata is not None:
                metadata = self.verified_metadata
            else:
                listed = expected.get(DCP_METADATA_FILE)
                if listed is not None and listed[0] > MAX_METADATA_BYTES:
                    _refuse(
                        f"{path}: listed as {listed[0]} bytes, more than the {MAX_METADATA_BYTES}-byte limit for DCP metadata"
                    )
                with verified_file(path, listed) as stream:
                    data = stream.read()
                metadata = self.verified_metadata = unpickle_metadata(data, str(path))
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

        def read_data(self, plan: Any, planner: Any) -> Any:
            if not defer_copies:
                return super().read_data(plan, planner)
            per_file: dict[str, list[Any]] = {}
            for item in plan.items:
                per_file.setdefault(self.storage_data[item.storage_index].relative_path, []).append(
                    item
                )
            for relative_path, items in per_file.items():
                with self.fs.create_stream(
                    self.fs.concat_path(self.path, relative_path), "rb"
                ) as stream:
                    for item in items:
                        info = self.storage_data[item.storage_index]
                        data = self.transforms.transform_load_stream(
                            item, info.transform_descriptors or (), self._slice_file(stream, info)
                        )
                        if item.type == LoadItemType.BYTE_IO:
                            self.deferred.append((planner, item, io.BytesIO(data.read(-1))))
                            continue
                        loaded = torch.load(
                            data if data.seekable() else io.BytesIO(data.read(-1)),
                            map_location="cpu",
                            weights_only=True,
                        )
                        loaded = narrow_tensor_by_index(loaded, item.storage_offsets, item.lengths)
                        target = planner.resolve_tensor(item).detach()
                        if target.size() != loaded.size():
                            raise ValueError(
                                f"{relative_path}: item {item.storage_index.fqn!r:.120} has size {tuple(loaded.size())}, the destination {tuple(target.size())}"
                            )
                        self.deferred.append((planner, item, (target, loaded)))
            done: Future[None] = Future()
            done.set_result(None)
            return done

        def apply(self) -> None:
            """Copy every deferred item into its destination (``defer_copies`` only)."""
            for planner, item, value in self.deferred:
                if item.type == LoadItemType.BYTE_IO:
                    planner.load_bytes(item, value)
                else:
                    target, loaded = value
                    target.copy_(loaded)
                    planner.commit_tensor(item, target)
            self.deferred.clear()

    reader = _SafeFileSystemReader(checkpoint_dir)
    if expected is not None:
        reader.fs = _VerifyingFileSystem(expected)
    return reader


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
