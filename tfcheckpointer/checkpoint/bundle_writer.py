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

import struct
import threading
from collections.abc import Sequence
from typing import Any

import google_crc32c
import numpy as np
from tensorflow.core.framework import versions_pb2
from tensorflow.core.protobuf import tensor_bundle_pb2

from tfcheckpointer.checkpoint import naming

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


def write_bundle(prefix: str, keys: Sequence[str], arrays: Sequence[np.ndarray]) -> None:
    """Write `arrays` under `keys` as the bundle `prefix` on a local disk.

    Callers check `unsupported_reason` first. Each array's bytes go from its
    own buffer to the file (numpy views, no copy for a contiguous array).
    """
    raws = [np.ascontiguousarray(array).reshape(-1).view(np.uint8) for array in arrays]
    checksums = _Checksums(raws)
    try:
        with open(prefix + DATA_SUFFIX, "wb") as data:
            for raw in raws:
                data.write(raw.data)
    except BaseException:
        checksums.stop()
        raise
    crcs = checksums.result()
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


_CRC_CHUNK = 4 << 20
"""google-crc32c holds the GIL over a numpy buffer: 4 MB (~0.5 ms) at a time, other threads
(training, under `async`) wait no longer than that."""


class _Checksums:
    """The CRC32C of each buffer, computed in a thread of its own while the caller writes.

    `write()` releases the GIL, so on a free core the checksums (~8 GB/s) hide
    behind the write. Where no thread can start (an async write that outlives
    the main thread, at interpreter exit), they are computed in `result()`.
    """

    def __init__(self, raws: Sequence[np.ndarray]):
        self._raws = raws
        self._crcs: list[int] = []
        self._error: BaseException | None = None
        self._stop = False
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name="tfcheckpointer-crc", daemon=True
        )
        try:
            self._thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            self._thread = None

    def _run(self) -> None:
        try:
            for raw in self._raws:
                crc = 0
                for start in range(0, raw.size, _CRC_CHUNK):
                    if self._stop:
                        return
                    crc = google_crc32c.extend(crc, raw[start : start + _CRC_CHUNK])
                self._crcs.append(crc)
        except BaseException as error:  # handed to the caller by result()
            self._error = error

    def result(self) -> list[int]:
        if self._thread is None:
            self._run()
        else:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._crcs

    def stop(self) -> None:
        """The write failed: end the thread soon, without checksumming the rest."""
        self._stop = True
        if self._thread is not None:
            self._thread.join()


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
