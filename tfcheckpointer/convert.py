"""Converting graph files between formats: `tfcheckpointer convert IN OUT`.

The formats follow from the extensions:

    IN                       OUT
    .pb    binary GraphDef   .pb     binary GraphDef
    .pbtxt text GraphDef     .pbtxt  text GraphDef
    .meta  MetaGraphDef      (not written; its graph_def goes to .pb / .pbtxt)

The conversion is exact: the GraphDef parsed from OUT equals the one parsed
from IN (`==` on the protocol buffers); the written file is read back and
compared before it is published. OUT is written to a temporary file in its
own directory and renamed into place, so on any error nothing is left at OUT
and no temporary file remains. An existing OUT is replaced only with
`force=True` (`--force`).
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf
from google.protobuf import text_format

from tfcheckpointer import naming
from tfcheckpointer.errors import CheckpointError, FreezeError
from tfcheckpointer.inspection import (
    GRAPH_DEF_SUFFIXES,
    META_GRAPH_SUFFIX,
    prefix_of_data_file,
    read_graph_def,
    read_meta_graph_def,
)

READABLE = {".pb": "binary GraphDef", ".pbtxt": "text GraphDef", META_GRAPH_SUFFIX: "MetaGraphDef"}
WRITABLE = {suffix: f"{fmt} GraphDef" for suffix, fmt in GRAPH_DEF_SUFFIXES.items()}


@dataclasses.dataclass(frozen=True)
class Conversion:
    """What `convert` wrote."""

    source: str
    destination: str
    source_format: str
    destination_format: str
    node_count: int
    bytes: int


def convert(source: str, destination: str, *, force: bool = False) -> Conversion:
    """Write the GraphDef of `source` to `destination` in the format of its extension.

    Args:
        source: A `.pb`, `.pbtxt` or `.meta` file.
        destination: A `.pb` or `.pbtxt` path in an existing directory.
        force: Replace `destination` if it exists.
    """
    source, destination = os.fspath(source), os.fspath(destination)
    _check_arguments(source, destination, force=force)
    if _suffix(source) == META_GRAPH_SUFFIX:
        graph_def = read_meta_graph_def(source)[0].graph_def
    else:
        graph_def = read_graph_def(source)
    as_text = GRAPH_DEF_SUFFIXES[_suffix(destination)] == "text"
    data = serialize_graph_def(graph_def, as_text=as_text)
    _publish(destination, data, graph_def, as_text=as_text)
    return Conversion(
        source,
        destination,
        READABLE[_suffix(source)],
        WRITABLE[_suffix(destination)],
        len(graph_def.node),
        len(data),
    )


def serialize_graph_def(graph_def: tf.compat.v1.GraphDef, *, as_text: bool) -> bytes:
    """Text format, or binary with map entries (node attributes) in a stable order."""
    if as_text:
        return text_format.MessageToString(graph_def).encode()
    return graph_def.SerializeToString(deterministic=True)


def _check_arguments(source: str, destination: str, *, force: bool) -> None:
    if _is_checkpoint(source) or tf.io.gfile.isdir(source):
        what = "a directory" if tf.io.gfile.isdir(source) else "a checkpoint"
        raise CheckpointError(
            f"{source} is {what}; convert reads graph files ({', '.join(READABLE)}). "
            f"HINT: use `tfcheckpointer inspect {source}` to list a checkpoint's variables."
        )
    if not tf.io.gfile.exists(source):
        raise FreezeError(f"No such file: {source}")
    if _suffix(source) not in READABLE:
        raise FreezeError(
            f"Cannot read {source}: unknown extension {_suffix(source)!r}; supported inputs are "
            + ", ".join(f"{s} ({name})" for s, name in READABLE.items())
            + "."
        )
    if _suffix(destination) not in WRITABLE:
        raise FreezeError(
            f"Cannot write {destination}: unknown extension {_suffix(destination)!r}; supported "
            "outputs are " + ", ".join(f"{s} ({name})" for s, name in WRITABLE.items()) + "."
        )
    if _same_file(source, destination):
        raise FreezeError(f"Input and output are the same file: {source}. HINT: give another OUT.")
    if tf.io.gfile.exists(destination) and not force:
        raise FreezeError(
            f"{destination} exists; not overwritten. HINT: pass --force (force=True) to replace it."
        )
    parent = os.path.dirname(destination) or "."
    if not tf.io.gfile.isdir(parent):
        raise FreezeError(f"Cannot write {destination}: directory {parent} does not exist.")


def _publish(
    destination: str, data: bytes, expected: tf.compat.v1.GraphDef, *, as_text: bool
) -> None:
    """Write to a temporary name, check it parses back to `expected`, rename into place."""
    temp = destination + naming.TEMP_INFIX
    try:
        with tf.io.gfile.GFile(temp, "wb") as f:
            f.write(data)
        if read_graph_def(temp, as_text=as_text) != expected:
            raise FreezeError(
                f"{destination} would not read back as the same graph; nothing was written."
            )
        tf.io.gfile.rename(temp, destination, overwrite=True)
    except (OSError, tf.errors.OpError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FreezeError(f"Cannot write {destination}: {reason}") from None
    finally:
        if tf.io.gfile.exists(temp):
            tf.io.gfile.remove(temp)


def _is_checkpoint(path: str) -> bool:
    return (
        path.endswith(naming.INDEX_SUFFIX)
        or prefix_of_data_file(path) is not None
        or tf.io.gfile.exists(path + naming.INDEX_SUFFIX)
    )


def _same_file(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1]
