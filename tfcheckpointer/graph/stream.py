"""A frozen GraphDef written node by node, each large constant's bytes read when its turn comes.

A GraphDef is `repeated NodeDef node = 1` followed by `library = 2` and
`versions = 4`; its wire format is the concatenation of those fields, so a
file written as one (tag, length, NodeDef) record per node, then the other
fields, parses to the same message. `StreamedGraph` holds the graph without
the large constants' values (its `skeleton`: small) and, for each of them, a
`ConstSource` that reads the tensor (from a variable, a session, a
checkpoint) when the file reaches it. Only one tensor is in memory at a time,
and the whole GraphDef never is.

The bytes are those `SerializeToString(deterministic=True)` gives for the
same GraphDef: a streamed constant's `value` attribute is encoded last in
its node, and its tensor as `make_tensor_proto` builds one (dtype, shape,
`tensor_content`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2
from tensorflow.python.framework import tensor_util

from tfcheckpointer.errors import FreezeError, tensorflow_error_line

# Field numbers of the messages written here (graph.proto, node_def.proto,
# attr_value.proto, tensor.proto).
_GRAPH_NODE = 1
_NODE_ATTR = 5
_MAP_KEY, _MAP_VALUE = 1, 2
_ATTR_TENSOR = 8
_TENSOR_CONTENT = 4
_LENGTH_DELIMITED = 2

WRITE_CHUNK_BYTES = 64 << 20
"""The most bytes handed to the file at once: a tensor is copied for the file layer in slices."""

STREAMED_DTYPES = frozenset(tensor_util._TENSOR_CONTENT_TYPES)  # pylint: disable=protected-access
"""The dtypes whose tensors `make_tensor_proto` stores as raw `tensor_content`, as streamed here."""


def varint(value: int) -> bytes:
    """`value` as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_header(field: int, length: int) -> bytes:
    """The tag and length that precede a length-delimited field of `length` bytes."""
    return varint(field << 3 | _LENGTH_DELIMITED) + varint(length)


def is_streamable(dtype: tf.DType, shape: tuple[int, ...]) -> bool:
    """Whether `make_tensor_proto` would store such a tensor as `tensor_content` (so it can stream)."""
    return dtype in STREAMED_DTYPES and int(np.prod(shape, dtype=np.int64)) > 1


@dataclasses.dataclass(frozen=True)
class ConstSource:
    """Where a streamed constant's value comes from, and what it must be."""

    dtype: tf.DType
    shape: tuple[int, ...]
    read: Callable[[], Any]
    """Returns the value (a NumPy array, or anything `np.asarray` takes without copying)."""

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.size

    def value(self, name: str) -> np.ndarray:
        """The value, checked against the dtype and shape the graph was built with."""
        try:
            array = np.asarray(self.read())
        except tf.errors.OpError as error:
            # Read while the file is written: the variable's fault, not the write's.
            raise FreezeError(
                f"Cannot read variable {name!r} to freeze it: {tensorflow_error_line(error)}"
            ) from None
        if tf.as_dtype(array.dtype) != self.dtype or tuple(array.shape) != self.shape:
            raise FreezeError(
                f"Variable {name!r} changed while it was frozen: it is {array.dtype}"
                f"{list(array.shape)}, the graph expects {self.dtype.name}{list(self.shape)}."
            )
        return np.ascontiguousarray(array)

    def tensor_header(self) -> bytes:
        """The TensorProto's bytes up to the content: dtype, shape and the content's tag and length."""
        head = tensor_pb2.TensorProto(
            dtype=self.dtype.as_datatype_enum,
            tensor_shape=tf.TensorShape(self.shape).as_proto(),
        ).SerializeToString(deterministic=True)
        return head + field_header(_TENSOR_CONTENT, self.nbytes)


@dataclasses.dataclass
class StreamedGraph:
    """A frozen GraphDef as a small skeleton plus the sources of its large constants.

    Attributes:
        skeleton: The GraphDef; each node named in `sources` is a `Const`
            with its `dtype` attribute and no `value`.
        sources: `{node name: ConstSource}`.
    """

    skeleton: Any
    sources: dict[str, ConstSource]

    @property
    def node_count(self) -> int:
        return len(self.skeleton.node)

    @property
    def constant_bytes(self) -> int:
        """The bytes the streamed constants hold."""
        return sum(source.nbytes for source in self.sources.values())

    def byte_size(self) -> int:
        """The binary file's exact size, known before any value is read."""
        return sum(len(head) + size for head, _, size in self._records()) + len(self._tail())

    def chunks(self) -> Iterator[bytes | memoryview]:
        """The binary file's bytes in order, each constant read when its node comes."""
        for head, name, size in self._records():
            yield head
            if name is not None:
                value = self.sources[name].value(name)
                yield memoryview(value.reshape(-1).view(np.uint8))
                del value  # before the next one is read
        yield self._tail()

    def text_chunks(self) -> Iterator[str]:
        """The text format (`.pbtxt`) in order, as `text_format.MessageToString` prints the whole.

        Text holds each value as escaped text, so a streamed node is built in
        full, one at a time.
        """
        for node in self.skeleton.node:
            if node.name in self.sources:
                node = self._full_node(node)
            yield "node {\n" + text_format.MessageToString(node, indent=2) + "}\n"
        yield text_format.MessageToString(self._rest())

    def materialize(self) -> Any:
        """The whole GraphDef in memory: every value read (as much memory as the old path needed)."""
        graph_def = tf.compat.v1.GraphDef()
        graph_def.CopyFrom(self.skeleton)
        for node in graph_def.node:
            if node.name in self.sources:
                node.CopyFrom(self._full_node(node))
        return graph_def

    def _full_node(self, node: Any) -> Any:
        full = tf.compat.v1.NodeDef()
        full.CopyFrom(node)
        value = self.sources[node.name].value(node.name)
        full.attr["value"].tensor.CopyFrom(
            tensor_util.make_tensor_proto(value, value.dtype, value.shape)
        )
        return full

    def record_sizes(self) -> list[int]:
        """The binary file's bytes per node, then of the fields after them: `byte_size()` in parts."""
        return [len(head) + size for head, _, size in self._records()] + [len(self._tail())]

    def _records(self) -> Iterator[tuple[bytes, str | None, int]]:
        """`(bytes before the value, streamed node name or None, value bytes)` per node."""
        for node in self.skeleton.node:
            body = node.SerializeToString(deterministic=True)
            source = self.sources.get(node.name)
            if source is None:
                yield field_header(_GRAPH_NODE, len(body)) + body, None, 0
                continue
            tensor = source.tensor_header()
            attr_value = field_header(_ATTR_TENSOR, len(tensor) + source.nbytes) + tensor
            key = field_header(_MAP_KEY, len(b"value")) + b"value"
            entry = key + field_header(_MAP_VALUE, len(attr_value) + source.nbytes) + attr_value
            entry = field_header(_NODE_ATTR, len(entry) + source.nbytes) + entry
            node_size = len(body) + len(entry) + source.nbytes
            yield field_header(_GRAPH_NODE, node_size) + body + entry, node.name, source.nbytes

    def _rest(self) -> Any:
        rest = tf.compat.v1.GraphDef()
        rest.CopyFrom(self.skeleton)
        del rest.node[:]
        return rest

    def _tail(self) -> bytes:
        """`library`, `versions`...: the fields after the nodes, deterministic."""
        return self._rest().SerializeToString(deterministic=True)


Progress = Callable[[int], None]
"""Called with the bytes written so far (for text, the binary bytes of the nodes written so far)."""

ProgressFactory = Callable[[int], Progress]
"""Given the bytes a file will have, returns the `Progress` that shows its writing."""


def write_stream(
    graph: StreamedGraph, file: BinaryIO, *, as_text: bool, progress: Progress | None = None
) -> tuple[str, int]:
    """Write `graph` to the open `file`; return its SHA-256 (hex) and size in bytes."""
    digest = hashlib.sha256()
    written = 0
    pieces = (t.encode() for t in graph.text_chunks()) if as_text else graph.chunks()
    # A progress is made for `byte_size()`, the binary size; text is several times longer,
    # so it advances by each node's binary size once that node's text is written.
    text_steps = iter(graph.record_sizes()) if as_text and progress is not None else None
    shown = 0
    # tf.io.gfile's files take bytes only: a memoryview is copied for them, a slice at a time.
    as_is = isinstance(file, io.IOBase)
    for piece in pieces:
        for start in range(0, len(piece), WRITE_CHUNK_BYTES):
            chunk = piece[start:start + WRITE_CHUNK_BYTES]
            digest.update(chunk)
            file.write(chunk if as_is else bytes(chunk))
            written += len(chunk)
            del chunk
            if progress is not None and text_steps is None:
                progress(written)
        if progress is not None and text_steps is not None:
            shown += next(text_steps)
            progress(shown)
    return digest.hexdigest(), written


def _read_varint(file: BinaryIO) -> int | None:
    """The next varint of `file`; None at its end."""
    value = shift = 0
    while True:
        byte = file.read(1)
        if not byte:
            if shift:
                raise FreezeError("The graph file ends inside a field tag (is it truncated?).")
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7


def read_fields(file: BinaryIO) -> Iterator[tuple[int, bytes, bytes]]:
    """`(field number, its tag and length, its payload)` for each top-level field of a binary file.

    Reads one field at a time, so a node's record is the most held at once.
    Raises FreezeError for a record that is cut short or of a wire type a
    GraphDef does not use.
    """
    while (key := _read_varint(file)) is not None:
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:  # `version = 3`, deprecated but still a GraphDef field
            number = _read_varint(file)
            if number is None:
                raise FreezeError("The graph file ends inside a field (is it truncated?).")
            yield field, varint(key), varint(number)
            continue
        if wire_type != _LENGTH_DELIMITED:
            raise FreezeError(f"The graph file has field {field} of wire type {wire_type}; "
                              "it is not a binary GraphDef.")
        length = _read_varint(file)
        data = file.read(length) if length is not None else b""
        if length is None or len(data) != length:
            raise FreezeError("The graph file ends inside a field (is it truncated?).")
        yield field, field_header(field, length), data
