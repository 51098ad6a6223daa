"""Reading and writing graph files: GraphDef (`.pb` binary, `.pbtxt` text) and MetaGraphDef (`.meta`).

Every GraphDef read goes through `read_graph_def`; every GraphDef and
MetaGraphDef is serialized by `serialize_graph_def` / `serialize_meta_graph_def`
(deterministic) and written atomically (`write_graph_def` here, a frozen
graph node by node by `write_streamed_graph`, or the
checkpoint manager's `write_file` and `.meta` beside each checkpoint, both
through `checkpoint.files.publish`).
Protobuf's wire format is lenient, so a parsed file is also checked for
sense (`graph_def_problem`), and a file of the wrong kind is named for what
it is (`sniff_graph_file`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from google.protobuf import message, text_format

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.files import atomic_write, publish
from tfcheckpointer.checkpoint.storage import files_for
from tfcheckpointer.errors import CheckpointError, FreezeError, first_line
from tfcheckpointer.graph.nodes import node_of, variable_nodes
from tfcheckpointer.graph.stream import Progress, StreamedGraph, write_stream

GRAPH_DEF_SUFFIXES = {".pb": "binary", ".pbtxt": "text"}
META_GRAPH_SUFFIX = naming.META_SUFFIX
# TensorFlow's own rule for node names (ops.py), which op and function names also follow.
_NODE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*", re.ASCII)


def suffix(path: str) -> str:
    return os.path.splitext(path)[1]


def serialize_graph_def(graph_def: Any, *, as_text: bool) -> bytes:
    """Text format, or binary with map entries (node attributes) in a stable order."""
    if as_text:
        return text_format.MessageToString(graph_def).encode()
    return graph_def.SerializeToString(deterministic=True)


def serialize_meta_graph_def(meta_graph: Any) -> bytes:
    """A MetaGraphDef's bytes, map fields in a fixed order so equal protos give equal bytes."""
    return meta_graph.SerializeToString(deterministic=True)


def write_graph_def(
    graph_def: Any, path: str, *, check: Callable[[str], object] | None = None
) -> bytes:
    """Atomically write a GraphDef, text for `.pbtxt`, binary otherwise; return the bytes.

    `check(temporary path)` runs on the written file before it is renamed into place.
    """
    data = serialize_graph_def(graph_def, as_text=path.endswith(".pbtxt"))
    atomic_write(path, data, check=check)
    return data


def write_streamed_graph(
    graph: StreamedGraph,
    path: str,
    *,
    check: Callable[[str], object] | None = None,
    progress: Progress | None = None,
) -> tuple[str, int]:
    """Atomically write a GraphDef node by node (`stream`); return its SHA-256 (hex) and size.

    Text for `.pbtxt`, binary otherwise, the bytes `write_graph_def` writes
    for `graph.materialize()`. `check(temporary path)` runs on the written
    file before it is renamed into place.
    """
    written: list[tuple[str, int]] = []

    def write(temp: str) -> None:
        # A local file takes each tensor's buffer as it is; tf.io.gfile (remote paths) needs bytes.
        with open(temp, "wb") if "://" not in temp else tf.io.gfile.GFile(temp, "wb") as file:
            written.append(
                write_stream(graph, file, as_text=path.endswith(".pbtxt"), progress=progress)
            )

    publish(path, write, check=check)
    return written[0]


def read_graph_def(path: str, *, as_text: bool | None = None) -> tf.compat.v1.GraphDef:
    """Parse and sanity-check a GraphDef: text when `as_text` (default: a `.pbtxt` path)."""
    if as_text is None:
        as_text = suffix(path) == ".pbtxt"
    data = read_bytes(path)
    graph_def = tf.compat.v1.GraphDef()
    problem = _parse(data, graph_def, as_text=as_text) or graph_def_problem(graph_def)
    if problem and _sniff_meta_graph(data):
        problem = f"it is a MetaGraphDef. HINT: give it the {META_GRAPH_SUFFIX} extension."
    if problem:
        raise FreezeError(f"{path} is not a GraphDef: {problem}")
    return graph_def


def read_meta_graph_def(path: str) -> tuple[Any, str]:
    """Parse and sanity-check a MetaGraphDef, binary or else text; returns it and its format."""
    data = read_bytes(path)
    meta_graph, fmt = tf.compat.v1.MetaGraphDef(), "binary"
    problem = _parse(data, meta_graph, as_text=False) or _meta_graph_problem(meta_graph)
    if problem and _is_utf8(data):
        meta_graph, fmt = tf.compat.v1.MetaGraphDef(), "text"
        problem = _parse(data, meta_graph, as_text=True) or _meta_graph_problem(meta_graph)
    sniffed = problem and sniff_graph_file(path)
    if sniffed:
        problem = f"it is a {sniffed[0]}. HINT: give it the {sniffed[1]} extension."
    if problem:
        raise FreezeError(f"{path} is not a MetaGraphDef: {problem}")
    return meta_graph, fmt


def sniff_graph_file(path: str) -> tuple[str, str] | None:
    """What graph `path` holds, whatever its name, and the extension it should have.

    `("frozen GraphDef", ".pb")`, `("GraphDef", ".pbtxt")`, `("MetaGraphDef",
    ".meta")`..., or None when it holds none of them.
    """
    try:
        data = read_bytes(path)
    except CheckpointError:
        return None
    for as_text, extension in ((False, ".pb"), (True, ".pbtxt")):
        graph_def = tf.compat.v1.GraphDef()
        if _parse(data, graph_def, as_text=as_text) is None and not graph_def_problem(graph_def):
            return ("GraphDef" if variable_nodes(graph_def) else "frozen GraphDef"), extension
    return ("MetaGraphDef", META_GRAPH_SUFFIX) if _sniff_meta_graph(data) else None


def graph_def_problem(graph_def: Any) -> str | None:
    """Why a parsed GraphDef is nonsense, or None.

    Protobuf's wire format is lenient: arbitrary bytes sometimes parse into
    "nodes" without names or ops. A real graph has named nodes with op names,
    unique names, and inputs that refer to nodes of the file.
    """
    if not graph_def.node:
        return "it has no nodes"
    names = set()
    for index, node in enumerate(graph_def.node):
        if not _NODE_NAME.fullmatch(node.name):
            return f"node #{index} has an invalid name {node.name!r}"
        if not _NODE_NAME.fullmatch(node.op):
            return f"node {node.name!r} has an invalid op {node.op!r}"
        if node.name in names:
            return f"node name {node.name!r} occurs twice"
        names.add(node.name)
    for node in graph_def.node:
        for source in node.input:
            if node_of(source) not in names:
                return (
                    f"node {node.name!r} reads {source!r}, which is not in the file "
                    "(is the file truncated?)"
                )
    return None


def _meta_graph_problem(meta_graph: Any) -> str | None:
    if not meta_graph.HasField("graph_def"):
        return "it has no graph_def"
    return graph_def_problem(meta_graph.graph_def)


def _parse(data: bytes, proto: Any, *, as_text: bool) -> str | None:
    """Parse `data` into `proto`; the error as text, or None on success."""
    if not data:
        return "the file is empty"
    try:
        if as_text:
            text_format.Parse(data.decode("utf-8"), proto)
        else:
            proto.ParseFromString(data)
    except UnicodeDecodeError:
        return "it is not text (a binary file with a text extension?)"
    except text_format.ParseError as error:
        return first_line(error)
    except message.DecodeError as error:
        return f"{first_line(error)} (a truncated file, or not a protocol buffer)"
    return None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _sniff_meta_graph(data: bytes) -> bool:
    meta_graph = tf.compat.v1.MetaGraphDef()
    return (
        _parse(data, meta_graph, as_text=False) is None
        and meta_graph.HasField("meta_info_def")
        and not _meta_graph_problem(meta_graph)
    )


def read_bytes(path: str) -> bytes:
    try:
        return files_for(path).read(path)
    except (tf.errors.OpError, OSError) as error:
        raise CheckpointError(f"Cannot read {path}: {first_line(error)}") from None


def file_size(path: str) -> int:
    return tf.io.gfile.stat(path).length


