"""The restricted DCP metadata reader: it accepts what torch writes on every supported interpreter
(Enum members pickled by value or, on Python < 3.11.3, as ``getattr(EnumClass, "NAME")``) and
refuses anything else without executing it, within limits bounded by the size of its input.

The pickles are built by hand from opcodes, so these tests mean the same on every interpreter."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ckptspec.safe_dcp import (  # noqa: E402
    MAX_TUPLE_NESTING,
    UnsafeCheckpointError,
    read_dcp_metadata,
    read_metadata_bytes,
    unpickle_metadata,
)

META = "torch.distributed.checkpoint.metadata"
P = pickle


def glob(module: str, name: str) -> bytes:
    return P.GLOBAL + f"{module}\n{name}\n".encode()


def text(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return P.BINUNICODE + struct.pack("<I", len(data)) + data


def integer(value: int) -> bytes:
    return P.BININT + struct.pack("<i", value)


def size(*dims: int) -> bytes:
    return (
        glob("torch", "Size")
        + P.MARK
        + b"".join(integer(d) for d in dims)
        + P.TUPLE
        + P.TUPLE1
        + P.REDUCE
    )


def obj(module: str, cls: str, fields: dict[str, bytes]) -> bytes:
    """``cls`` built as pickle builds dataclasses: NEWOBJ, then BUILD with a state dict."""
    state = P.EMPTY_DICT + P.MARK + b"".join(text(k) + v for k, v in fields.items()) + P.SETITEMS
    return glob(module, cls) + P.EMPTY_TUPLE + P.NEWOBJ + state + P.BUILD


ENUM_BY_NAME = (
    glob("builtins", "getattr")
    + glob(META, "_MEM_FORMAT_ENCODING")
    + text("TORCH_CONTIGUOUS_FORMAT")
    + P.TUPLE2
    + P.REDUCE
)
ENUM_BY_VALUE = glob(META, "_MEM_FORMAT_ENCODING") + integer(0) + P.TUPLE1 + P.REDUCE


def properties(memory_format: bytes) -> bytes:
    state = (
        P.MARK
        + glob("torch", "float32")
        + glob("torch", "strided")
        + P.NEWFALSE
        + memory_format
        + P.NEWFALSE
        + P.TUPLE
    )
    return glob(META, "TensorProperties") + P.EMPTY_TUPLE + P.NEWOBJ + state + P.BUILD


def metadata(
    memory_format: bytes = ENUM_BY_NAME, tensor_size: bytes = size(2, 3), storage: bytes = P.NONE
) -> bytes:
    chunk = obj(META, "ChunkStorageMetadata", {"offsets": size(0, 0), "sizes": size(2, 3)})
    tensor = obj(
        META,
        "TensorStorageMetadata",
        {
            "properties": properties(memory_format),
            "size": tensor_size,
            "chunks": P.EMPTY_LIST + chunk + P.APPEND,
        },
    )
    state = P.EMPTY_DICT + text("w") + tensor + P.SETITEM
    return (
        P.PROTO
        + b"\x02"
        + obj(META, "Metadata", {"state_dict_metadata": state, "storage_data": storage})
        + P.STOP
    )


def storage(relative_path: str) -> bytes:
    index = obj(
        META, "MetadataIndex", {"fqn": text("w"), "offset": size(0, 0), "index": integer(0)}
    )
    info = obj(
        "torch.distributed.checkpoint.filesystem",
        "_StorageInfo",
        {"relative_path": text(relative_path), "offset": integer(0), "length": integer(24)},
    )
    return P.EMPTY_DICT + index + info + P.SETITEM


@pytest.mark.parametrize(
    "memory_format", [ENUM_BY_NAME, ENUM_BY_VALUE], ids=["getattr-by-name", "call-by-value"]
)
def test_enum_members_as_every_interpreter_pickles_them(memory_format: bytes) -> None:
    m = unpickle_metadata(metadata(memory_format))
    item = m.state_dict_metadata["w"]
    assert tuple(item.size) == (2, 3) and item.properties.dtype is torch.float32
    assert item.properties.memory_format is torch.contiguous_format


def test_storage_entry_inside_the_directory_is_read() -> None:
    m = unpickle_metadata(metadata(storage=storage("__0_0.distcp")))
    assert [i.relative_path for i in m.storage_data.values()] == ["__0_0.distcp"]


HOSTILE = {
    # getattr on a module that is not allow-listed: refused when the module is looked up
    "getattr-os-system": glob("builtins", "getattr")
    + glob("os", "system")
    + text("x")
    + P.TUPLE2
    + P.REDUCE,
    # getattr on an allow-listed class that is not an Enum
    "getattr-non-enum": glob("builtins", "getattr")
    + glob("torch", "Size")
    + text("__reduce__")
    + P.TUPLE2
    + P.REDUCE,
    # getattr on the allowed Enum with a name that is not a member
    "getattr-non-member": glob("builtins", "getattr")
    + glob(META, "_MEM_FORMAT_ENCODING")
    + text("__class__")
    + P.TUPLE2
    + P.REDUCE,
    "getattr-non-string": glob("builtins", "getattr")
    + glob(META, "_MEM_FORMAT_ENCODING")
    + integer(0)
    + P.TUPLE2
    + P.REDUCE,
    # BUILD on an allow-listed class (not an instance) would patch the class
    "build-on-class": glob("torch", "Size")
    + P.NONE
    + P.EMPTY_DICT
    + text("__eq__")
    + P.NONE
    + P.SETITEM
    + P.TUPLE2
    + P.BUILD,
    "nested-tuples": P.NONE + P.TUPLE1 * (MAX_TUPLE_NESTING + 1),
    "shared-container": P.EMPTY_LIST + P.BINPUT + b"\x01" + P.BINGET + b"\x01" + P.TUPLE2,
    "persistent-id": P.NONE + P.BINPERSID,
    "missing-memo": P.BINGET + b"\x07",
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_pickles_are_refused(body: bytes) -> None:
    with pytest.raises(UnsafeCheckpointError):
        unpickle_metadata(P.PROTO + b"\x02" + body + P.STOP)


def test_getattr_refusal_executes_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    body = (
        glob("builtins", "getattr")
        + glob("builtins", "open")
        + text("__call__")
        + P.TUPLE2
        + P.REDUCE
        + text(str(marker))
        + text("w")
        + P.TUPLE2
        + P.REDUCE
    )
    with pytest.raises(UnsafeCheckpointError, match="builtins.open"):
        unpickle_metadata(P.PROTO + b"\x02" + body + P.STOP)
    assert not marker.exists()


def test_memo_index_costs_nothing_until_used() -> None:
    """Regression: a 9-byte LONG_BINPUT of index 2**27 made the C unpickler allocate 2 GB."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UnsafeCheckpointError, match="holds NoneType"):
        unpickle_metadata(
            P.PROTO + b"\x02" + P.NONE + P.LONG_BINPUT + struct.pack("<I", 2**27) + P.STOP
        )
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB


def test_amplifying_pickle_is_refused() -> None:
    # one 1000-element tuple, passed to torch.Size 10,000 times through the memo: 10 million copies from 30 KB
    big = P.MARK + integer(1) * 1000 + P.TUPLE + P.BINPUT + b"\x01" + P.POP
    calls = (glob("torch", "Size") + P.BINGET + b"\x01" + P.TUPLE1 + P.REDUCE + P.POP) * 10_000
    with pytest.raises(UnsafeCheckpointError):
        unpickle_metadata(P.PROTO + b"\x02" + big + calls + P.NONE + P.STOP)


HOSTILE_METADATA = {
    "size-as-string": metadata(tensor_size=text("12")),
    "size-as-list": metadata(tensor_size=P.EMPTY_LIST),
    "absolute-storage-path": metadata(storage=storage("/etc/passwd")),
    "escaping-storage-path": metadata(storage=storage("../outside.distcp")),
    "storage-as-list": metadata(storage=P.EMPTY_LIST),
    "mixed-key-types": metadata().replace(
        text("w") + glob(META, "TensorStorageMetadata"),
        integer(7) + glob(META, "TensorStorageMetadata"),
        1,
    ),
}


@pytest.mark.parametrize("data", HOSTILE_METADATA.values(), ids=HOSTILE_METADATA.keys())
def test_well_formed_metadata_with_hostile_contents_is_refused(data: bytes) -> None:
    with pytest.raises(UnsafeCheckpointError, match="storage_data|state_dict_metadata"):
        unpickle_metadata(data)


def test_metadata_file_must_be_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".metadata")  # a FIFO with no writer: opening must not hang
    with pytest.raises(UnsafeCheckpointError, match="not a regular file"):
        read_dcp_metadata(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match="limit"):
        (tmp_path / "big").write_bytes(b"\0" * 65)
        read_metadata_bytes(tmp_path / "big", max_bytes=64)
