"""Writing a V2 bundle ourselves, byte for byte what TensorFlow's `SaveV2` op writes.

`SaveV2` (tensorflow/core/util/tensor_bundle) pushes every byte through an
8 MB buffer; for a numeric, unpartitioned snapshot on a local disk this
writes each tensor's bytes straight from its buffer instead, in ~0.65× the
time (benchmarks/throughput.py). The files are the same bytes a `Saver` writes, so every
reader (`Saver.restore`, `tf.train.load_checkpoint`, `list_variables`) reads
them; `tests/checkpoint/test_bundle_writer.py` compares them with `SaveV2`'s.

The layout, as `BundleWriter` writes it with default options:

- `<prefix>.data-00000-of-00001`: the tensors' bytes back to back, in the
  order they were given, with no alignment padding.
- `<prefix>.index`: a LevelDB-format table (tsl/lib/io/table_builder),
  uncompressed, blocks of up to 256 KiB with a restart point every 16 keys,
  mapping `""` to a `BundleHeaderProto` and each key, in byte order, to a
  `BundleEntryProto` (dtype, shape, offset, size, masked CRC32C).
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Sequence
from typing import Any

import google_crc32c
import numpy as np
from tensorflow.core.framework import versions_pb2
from tensorflow.core.protobuf import tensor_bundle_pb2

from tfcheckpointer.checkpoint import naming, parallel, spare

DATA_SUFFIX = ".data-00000-of-00001"
_BLOCK_SIZE = 262144  # tsl::table::Options::block_size
_RESTART_INTERVAL = 16  # tsl::table::Options::block_restart_interval
_NO_COMPRESSION = 0
_MAGIC = 0xDB4775248B80FB57
_MAX_HANDLE_LENGTH = 20  # two varint64s
_BUNDLE_VERSION = 1  # kTensorBundleVersion
# dtype enum by numpy dtype name: every type whose bytes TensorFlow writes as they lie in memory.
_DTYPES = {
    "float16": 19, "float32": 1, "float64": 2, "bfloat16": 14,
    "int8": 6, "int16": 5, "int32": 3, "int64": 9,
    "uint8": 4, "uint16": 17, "uint32": 22, "uint64": 23,
    "bool": 10, "complex64": 8, "complex128": 18,
}


def unsupported_reason(keys: Sequence[str], arrays: Sequence[Any], slices: Sequence[str]) -> str | None:
    """Why these tensors need `SaveV2` (strings, slices, a repeated key...); None if they do not.

    A snapshot that does not match up (more keys than tensors) goes to `SaveV2` too,
    which rejects it with the error it always gave.
    """
    if len(keys) != len(arrays) or len(slices) != len(keys):
        return f"{len(keys)} keys, {len(arrays)} tensors and {len(slices)} slice specs"
    if len(set(keys)) != len(keys):
        return "a key repeats"
    if any(slices):
        return "a variable is saved in slices"
    for key, array in zip(keys, arrays):
        if array.dtype.name not in _DTYPES or array.dtype.byteorder == ">":
            return f"{key} has dtype {array.dtype}"
    return None


def write_bundle(
    prefix: str, keys: Sequence[str], arrays: Sequence[np.ndarray], *, reuse: spare.Claim | None = None
) -> None:
    """Write `arrays` under `keys` as the bundle `prefix` on a local disk.

    Callers check `unsupported_reason` first. Each array's bytes go from its
    own buffer to the file (numpy views, no copy for a contiguous array).
    `reuse`: a claimed spare data file, renamed to the data file and overwritten.
    """
    raws = [np.ascontiguousarray(array).reshape(-1).view(np.uint8) for array in arrays]
    path = prefix + DATA_SUFFIX
    fd = None
    try:
        if reuse is not None:
            fd = reuse.move_to(path)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        crcs = _write_data(fd, raws)
        os.ftruncate(fd, sum(raw.size for raw in raws))  # a reused file may have been longer
    finally:
        if fd is not None:
            os.close(fd)
    entries: dict[bytes, bytes] = {}
    offset = 0
    for key, array, raw, crc in zip(keys, arrays, raws, crcs):
        entry = tensor_bundle_pb2.BundleEntryProto(
            dtype=_DTYPES[array.dtype.name], offset=offset, size=raw.size, crc32c=_mask(crc),
        )
        entry.shape.SetInParent()  # a scalar still has a (dimensionless) shape
        for size in array.shape:
            entry.shape.dim.add(size=size)
        entries[key.encode()] = entry.SerializeToString()
        offset += raw.size
    header = tensor_bundle_pb2.BundleHeaderProto(
        num_shards=1, version=versions_pb2.VersionDef(producer=_BUNDLE_VERSION)
    )
    table = [(b"", header.SerializeToString())] + sorted(entries.items())
    with open(prefix + naming.INDEX_SUFFIX, "wb") as index:
        index.write(_table(table))


_CHUNK = 4 << 20
"""Bytes written, then checksummed, at a time. google-crc32c holds the GIL over a numpy
buffer: 4 MB (~0.5 ms) at a time, other threads (training, under `async`) wait no longer."""


def _write_data(fd: int, raws: Sequence[np.ndarray]) -> list[int]:
    """Write `raws` back to back from offset 0 of `fd`; return the CRC32C of each.

    Two threads share the arrays, whole arrays each (`parallel.share_out`:
    a CRC32C cannot be split between threads with google-crc32c, which
    cannot combine two). Each writes a chunk with `pwrite`, which lets go of
    the GIL, then checksums it while it is still in cache, so that one
    writes while the other checksums. 214 MB on the README's 2-core VM, into
    a new file: ~0.06 s, against ~0.08 s for one thread writing beside one
    checksumming (which waits for the GIL after each of its writes).
    """
    offsets = [0]
    for raw in raws:
        offsets.append(offsets[-1] + raw.size)
    crcs = [0] * len(raws)

    def write(i: int, stop: threading.Event) -> None:
        raw, crc = raws[i], 0
        for start in range(0, raw.size, _CHUNK):
            if stop.is_set():  # the other thread failed
                return
            chunk = raw[start : start + _CHUNK]
            view, position = memoryview(chunk), offsets[i] + start
            while view:  # pwrite may write less than asked
                written = os.pwrite(fd, view, position)
                view, position = view[written:], position + written
            crc = google_crc32c.extend(crc, chunk)
        crcs[i] = crc

    parallel.share_out([raw.size for raw in raws], write)
    return crcs


def _table(items: list[tuple[bytes, bytes]]) -> bytes:
    """A LevelDB table of sorted `items`, as tsl's `TableBuilder` lays it out."""
    out = bytearray()
    index = _Block(restart_interval=1)
    block = _Block(_RESTART_INTERVAL)
    pending: bytes | None = None  # the handle of the last data block, not yet indexed
    last = b""
    for key, value in items:
        if pending is not None:
            index.add(_separator(last, key), pending)
            pending = None
        last = key
        block.add(key, value)
        if block.size_estimate() >= _BLOCK_SIZE:
            pending = _write_block(out, block.finish())
            block = _Block(_RESTART_INTERVAL)
    if not block.empty():
        pending = _write_block(out, block.finish())
    metaindex = _write_block(out, _Block(_RESTART_INTERVAL).finish())
    if pending is not None:
        index.add(_successor(last), pending)
    index_handle = _write_block(out, index.finish())
    footer = (metaindex + index_handle).ljust(2 * _MAX_HANDLE_LENGTH, b"\0")
    out += footer + struct.pack("<II", _MAGIC & 0xFFFFFFFF, _MAGIC >> 32)
    return bytes(out)


class _Block:
    """tsl's `BlockBuilder`: prefix-compressed keys, a restart point every `restart_interval`."""

    def __init__(self, restart_interval: int):
        self.restart_interval = restart_interval
        self.buffer = bytearray()
        self.restarts = [0]
        self.counter = 0
        self.last = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.counter < self.restart_interval:
            limit = min(len(self.last), len(key))
            while shared < limit and self.last[shared] == key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buffer))
            self.counter = 0
        self.buffer += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        self.buffer += key[shared:] + value
        self.last = key
        self.counter += 1

    def empty(self) -> bool:
        return not self.buffer

    def size_estimate(self) -> int:
        return len(self.buffer) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        restarts = struct.pack(f"<{len(self.restarts)}I", *self.restarts)
        return bytes(self.buffer) + restarts + struct.pack("<I", len(self.restarts))


def _write_block(out: bytearray, contents: bytes) -> bytes:
    """Append `contents` and its trailer (type, masked CRC32C); return its encoded handle."""
    handle = _varint(len(out)) + _varint(len(contents))
    crc = google_crc32c.extend(google_crc32c.value(contents), bytes([_NO_COMPRESSION]))
    out += contents + struct.pack("<BI", _NO_COMPRESSION, _mask(crc))
    return handle


def _separator(start: bytes, limit: bytes) -> bytes:
    """A short key in [start, limit): tsl's `FindShortestSeparator` for bytewise order."""
    shared = 0
    while shared < min(len(start), len(limit)) and start[shared] == limit[shared]:
        shared += 1
    if shared < min(len(start), len(limit)):
        byte = start[shared]
        if byte < 0xFF and byte + 1 < limit[shared]:
            return start[:shared] + bytes([byte + 1])
    return start


def _successor(key: bytes) -> bytes:
    """A short key >= `key`: tsl's `FindShortSuccessor`."""
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


def _mask(crc: int) -> int:
    """crc32c::Mask: what TensorFlow stores, so that a CRC of data holding CRCs stays useful."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
