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

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.errors import CheckpointError, FreezeError, first_line
from tfcheckpointer.graph.files import (
    GRAPH_DEF_SUFFIXES,
    META_GRAPH_SUFFIX,
    read_graph_def,
    read_meta_graph_def,
    suffix,
    write_graph_def,
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
    if suffix(source) == META_GRAPH_SUFFIX:
        graph_def = read_meta_graph_def(source)[0].graph_def
    else:
        graph_def = read_graph_def(source)
    data = _publish(destination, graph_def)
    return Conversion(
        source,
        destination,
        READABLE[suffix(source)],
        WRITABLE[suffix(destination)],
        len(graph_def.node),
        len(data),
    )


def _check_arguments(source: str, destination: str, *, force: bool) -> None:
    if _is_checkpoint(source) or tf.io.gfile.isdir(source):
        what = "a directory" if tf.io.gfile.isdir(source) else "a checkpoint"
        raise CheckpointError(
            f"{source} is {what}; convert reads graph files ({', '.join(READABLE)}). "
            f"HINT: use `tfcheckpointer inspect {source}` to list a checkpoint's variables."
        )
    if not tf.io.gfile.exists(source):
        raise FreezeError(f"No such file: {source}")
    if suffix(source) not in READABLE:
        raise FreezeError(
            f"Cannot read {source}: unknown extension {suffix(source)!r}; supported inputs are "
            + ", ".join(f"{s} ({name})" for s, name in READABLE.items())
            + "."
        )
    if suffix(destination) not in WRITABLE:
        raise FreezeError(
            f"Cannot write {destination}: unknown extension {suffix(destination)!r}; supported "
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


def _publish(destination: str, graph_def: tf.compat.v1.GraphDef) -> bytes:
    """Write `destination`, checking that it parses back to `graph_def` before it is renamed in."""

    def same_graph(temp: str) -> None:
        if read_graph_def(temp, as_text=destination.endswith(".pbtxt")) != graph_def:
            raise FreezeError(
                f"{destination} would not read back as the same graph; nothing was written."
            )

    try:
        return write_graph_def(graph_def, destination, check=same_graph)
    except (OSError, tf.errors.OpError) as error:
        raise FreezeError(f"Cannot write {destination}: {first_line(error)}") from None


def _is_checkpoint(path: str) -> bool:
    return (
        path.endswith(naming.INDEX_SUFFIX)
        or naming.data_file_shards(path) is not None
        or tf.io.gfile.exists(path + naming.INDEX_SUFFIX)
    )


def _same_file(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
