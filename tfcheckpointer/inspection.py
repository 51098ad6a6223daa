"""What a TF1 model file holds, read without running it: `tfcheckpointer inspect PATH`.

`inspect_path` takes a checkpoint directory, a checkpoint prefix (or its
`.index` file), a GraphDef (`.pb` binary, `.pbtxt` text) or a MetaGraphDef
(`.meta`) and returns one JSON-ready dict; `format_report` renders it as
aligned text. Files are parsed, never executed: no session runs and no
checkpoint value is read except the `global_step` scalar.

The dict's keys are stable. For a checkpoint:

    kind             "checkpoint"
    path             PATH as given
    prefix           the checkpoint inspected (for a directory: its newest)
    step             int or null: the `global_step` tensor, else the number
                     ending the prefix (`model.ckpt-100` -> 100)
    step_source      "global_step", "prefix" or null
    variables        [{key, shape, dtype, bytes}], sorted by key; `bytes` is
                     elements x dtype size, null for strings and other
                     variable-size dtypes
    variable_count   int
    total_bytes      the sum of the variables' known `bytes`
    files            [{path, bytes}] of the checkpoint's files on disk
    checkpoints      for a directory, every checkpoint in it as [{prefix, step}]
                     (oldest step first); null when PATH is a prefix

For a GraphDef or MetaGraphDef:

    kind             "graph_def" or "meta_graph"
    path             PATH as given
    format           "binary" or "text"
    bytes            file size
    node_count       nodes in the graph (not counting function bodies)
    ops              {op: count}, most frequent first
    inputs           [{name, tensor, dtype, shape}]; `shape` is a list with
                     null for unknown sizes, or null for an unknown rank
    inputs_source    where `inputs` come from (below)
    outputs          [{name, tensor, dtype, shape}]
    outputs_source   where `outputs` come from (below)
    frozen           true when no variable is left: no op of
                     `freeze.VARIABLE_OPS` (in the graph or its functions) and
                     no resource placeholder
    variable_ops     [{name, op, function}] of those variables; `function`
                     is null for graph nodes
    functions        [{name, node_count}] of the function library
    meta_graph       null for a GraphDef; for a MetaGraphDef {tags,
                     tensorflow_version, saver_def, collections, signatures}:
                     saver_def is null or {filename_tensor_name,
                     save_tensor_name, restore_op_name, version},
                     collections the sorted collection keys, signatures
                     {key: {method_name, inputs: {name: tensor},
                     outputs: {name: tensor}}}

Inputs and outputs are found in this order:

- `signature_def`: a MetaGraphDef's signature `serving_default`, else its
  first signature by name;
- `collections`: a MetaGraphDef's collections named `inputs` and `outputs`;
- `sidecar`: the `<file>.json` that `freeze_model` writes beside a frozen
  graph, when every node it names is in the graph;
- `placeholders` (inputs): every `Placeholder` node that is not a resource
  (a resource placeholder is a captured variable);
- `sinks` (outputs): every node whose outputs no other node reads, neither
  as data nor as a control dependency; one entry per output tensor of such
  a node. Left out, as they are not results: `NoOp`, `Const`, placeholders,
  asserts, variable ops, save/restore ops and nodes that read one directly
  (a Saver's `save/control_dependency`).
"""

from __future__ import annotations

import collections
import json
import os
import re
from collections.abc import Container, Iterator, Mapping
from typing import Any

import tensorflow as tf
from google.protobuf import message, text_format

from tfcheckpointer import naming
from tfcheckpointer.errors import CheckpointError, FreezeError
from tfcheckpointer.freeze import VARIABLE_OPS

GRAPH_DEF_SUFFIXES = {".pb": "binary", ".pbtxt": "text"}
META_GRAPH_SUFFIX = naming.META_SUFFIX
SUPPORTED = "a checkpoint directory or prefix, a .pb / .pbtxt GraphDef or a .meta MetaGraphDef"

_SAVER_OPS = frozenset(
    {"SaveV2", "RestoreV2", "SaveSlices", "Save", "Restore", "RestoreSlice", "MergeV2Checkpoints"}
)
# Sinks of these ops are bookkeeping, not results.
_NOT_OUTPUT_OPS = VARIABLE_OPS | _SAVER_OPS | {
    "NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "Assert"
}
_DATA_FILE = re.compile(r"(?P<prefix>.+)\.data-\d+-of-(?P<shards>\d+)")
_PREFIX_STEP = re.compile(r"-(\d+)$")
# TensorFlow's own rule for node names (ops.py), which op and function names also follow.
_NODE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*", re.ASCII)
_VARIABLE_SIZE_DTYPES = {tf.string, tf.resource, tf.variant}


def inspect_path(path: str) -> dict[str, Any]:
    """The facts about `path`, a checkpoint (directory or prefix) or a graph file."""
    path = os.fspath(path)
    _refuse_data_file(path)
    if tf.io.gfile.isdir(path):
        return inspect_checkpoint_directory(path)
    if _suffix(path) in GRAPH_DEF_SUFFIXES or _suffix(path) == META_GRAPH_SUFFIX:
        _require_file(path)
        return inspect_graph_file(path)
    return inspect_checkpoint(path)


# --- checkpoints -----------------------------------------------------------------------------


def inspect_checkpoint_directory(directory: str) -> dict[str, Any]:
    """The newest checkpoint of `directory`, and the list of all of them."""
    found = list_checkpoints(directory)
    latest = tf.train.latest_checkpoint(directory)
    if latest is not None and os.path.dirname(latest) != directory.rstrip("/"):
        # A state file with absolute paths, copied or moved with its run directory.
        moved = os.path.join(directory, os.path.basename(latest))
        if tf.io.gfile.exists(moved + naming.INDEX_SUFFIX):
            latest = moved
    if latest is None:
        if not found:
            raise CheckpointError(
                f"No checkpoint in directory {directory}: no `{naming.STATE_FILENAME}` state file "
                f"and no *{naming.INDEX_SUFFIX} files. HINT: give the directory a training run "
                "writes checkpoints to, or a checkpoint prefix."
            )
        latest = found[-1]["prefix"]
    report = inspect_checkpoint(latest)
    report["path"] = directory
    report["checkpoints"] = found
    return report


def list_checkpoints(directory: str) -> list[dict[str, Any]]:
    """`[{prefix, step}]` for every `*.index` file in `directory`, oldest step first."""
    found = []
    for filename in tf.io.gfile.listdir(directory):
        filename = filename.rstrip("/")
        if filename.endswith(naming.INDEX_SUFFIX):
            prefix = os.path.join(directory, filename[: -len(naming.INDEX_SUFFIX)])
            found.append({"prefix": prefix, "step": _step_of_prefix(prefix)})
    return sorted(found, key=lambda c: (c["step"] is not None, c["step"] or 0, c["prefix"]))


def inspect_checkpoint(path: str) -> dict[str, Any]:
    """The variables, step and files of the checkpoint at prefix `path` (or its `.index`)."""
    prefix = path[: -len(naming.INDEX_SUFFIX)] if path.endswith(naming.INDEX_SUFFIX) else path
    index = prefix + naming.INDEX_SUFFIX
    if not tf.io.gfile.exists(index):
        if tf.io.gfile.exists(prefix):
            _refuse_graph_as_checkpoint(prefix)
            raise CheckpointError(
                f"{prefix} is not a checkpoint: there is no {index}. HINT: give {SUPPORTED}."
            )
        raise CheckpointError(f"No such file, directory or checkpoint: {path}")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as error:
        _refuse_graph_as_checkpoint(index)
        raise CheckpointError(
            f"Cannot read checkpoint {prefix}: {_first_line(error)} (is {index} truncated?)"
        ) from None
    files = _checkpoint_files(prefix)
    _require_data_files(prefix, files)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    variables = [_variable(key, shapes[key], dtypes[key]) for key in sorted(shapes)]
    step, source = _step_of_prefix(prefix), "prefix"
    if naming.GLOBAL_STEP_KEY in shapes and not shapes[naming.GLOBAL_STEP_KEY]:
        try:
            step, source = int(reader.get_tensor(naming.GLOBAL_STEP_KEY)), "global_step"
        except (tf.errors.OpError, ValueError, TypeError) as error:
            raise CheckpointError(
                f"Cannot read `{naming.GLOBAL_STEP_KEY}` from checkpoint {prefix}: "
                f"{_first_line(error)}"
            ) from None
    return {
        "kind": "checkpoint",
        "path": path,
        "prefix": prefix,
        "step": step,
        "step_source": source if step is not None else None,
        "variables": variables,
        "variable_count": len(variables),
        "total_bytes": sum(v["bytes"] or 0 for v in variables),
        "files": files,
        "checkpoints": None,
    }


def _variable(key: str, shape: list[int], dtype: tf.DType) -> dict[str, Any]:
    count = 1
    for size in shape:
        count *= size
    nbytes = None if dtype in _VARIABLE_SIZE_DTYPES else count * dtype.size
    return {"key": key, "shape": list(shape), "dtype": dtype.name, "bytes": nbytes}


def _step_of_prefix(prefix: str) -> int | None:
    match = _PREFIX_STEP.search(prefix)
    return int(match.group(1)) if match else None


def _checkpoint_files(prefix: str) -> list[dict[str, Any]]:
    directory, name = os.path.split(prefix)
    paths = [
        os.path.join(directory, filename)
        for filename in sorted(tf.io.gfile.listdir(directory or "."))
        if naming.is_checkpoint_file(filename, name)
    ]
    return [{"path": path, "bytes": _size(path)} for path in paths]


def _require_data_files(prefix: str, files: list[dict[str, Any]]) -> None:
    name = os.path.basename(prefix)
    shards = {}
    for file in files:
        match = _DATA_FILE.fullmatch(os.path.basename(file["path"]))
        if match and match.group("prefix") == name:
            shards[os.path.basename(file["path"])] = int(match.group("shards"))
    if not shards:
        raise CheckpointError(
            f"Checkpoint {prefix} has an index but no {naming.DATA_INFIX}* file; it is incomplete."
        )
    expected = {f"{name}.data-{i:05d}-of-{n:05d}" for n in set(shards.values()) for i in range(n)}
    missing = sorted(expected - set(shards))
    if missing:
        raise CheckpointError(f"Checkpoint {prefix} is incomplete: {', '.join(missing)} missing.")


def prefix_of_data_file(path: str) -> str | None:
    """The checkpoint prefix of `<prefix>.data-<i>-of-<n>`, or None for any other path."""
    match = _DATA_FILE.fullmatch(path)
    return match.group("prefix") if match else None


def _refuse_data_file(path: str) -> None:
    prefix = prefix_of_data_file(path)
    if prefix is not None:
        raise CheckpointError(
            f"{path} is one data shard of a checkpoint, not a whole checkpoint. "
            f"HINT: give the checkpoint prefix {prefix} (or {prefix}{naming.INDEX_SUFFIX})."
        )


def _refuse_graph_as_checkpoint(path: str) -> None:
    """Name what `path` really is when a checkpoint was expected and it is a graph."""
    sniffed = sniff_graph_file(path)
    if sniffed is not None:
        kind, suffix = sniffed
        raise CheckpointError(
            f"{path} is a {kind}, not a checkpoint. HINT: name it *{suffix} to inspect it "
            "as a graph."
        )


# --- graph files -----------------------------------------------------------------------------


def inspect_graph_file(path: str) -> dict[str, Any]:
    """The structure of a GraphDef (`.pb`, `.pbtxt`) or MetaGraphDef (`.meta`) file."""
    if _suffix(path) == META_GRAPH_SUFFIX:
        meta_graph, fmt = read_meta_graph_def(path)
        graph_def = meta_graph.graph_def
    else:
        meta_graph, fmt = None, GRAPH_DEF_SUFFIXES[_suffix(path)]
        graph_def = read_graph_def(path)
    lookup = _TensorLookup(graph_def)
    inputs, inputs_source = _inputs(path, graph_def, meta_graph, lookup)
    outputs, outputs_source = _outputs(path, graph_def, meta_graph, lookup)
    variable_ops = _variable_ops(graph_def)
    ops = collections.Counter(node.op for node in graph_def.node)
    return {
        "kind": "meta_graph" if meta_graph is not None else "graph_def",
        "path": path,
        "format": fmt,
        "bytes": _size(path),
        "node_count": len(graph_def.node),
        "ops": dict(sorted(ops.items(), key=lambda item: (-item[1], item[0]))),
        "inputs": inputs,
        "inputs_source": inputs_source,
        "outputs": outputs,
        "outputs_source": outputs_source,
        "frozen": not variable_ops,
        "variable_ops": variable_ops,
        "functions": [
            {"name": f.signature.name, "node_count": len(f.node_def)}
            for f in sorted(graph_def.library.function, key=lambda f: f.signature.name)
        ],
        "meta_graph": _describe_meta_graph(meta_graph) if meta_graph is not None else None,
    }


def read_graph_def(path: str, *, as_text: bool | None = None) -> tf.compat.v1.GraphDef:
    """Parse and sanity-check a GraphDef: text when `as_text` (default: a `.pbtxt` path)."""
    if as_text is None:
        as_text = _suffix(path) == ".pbtxt"
    data = _read(path)
    graph_def = tf.compat.v1.GraphDef()
    problem = _parse(data, graph_def, as_text=as_text) or graph_def_problem(graph_def)
    if problem and _sniff_meta_graph(data):
        problem = f"it is a MetaGraphDef. HINT: give it the {META_GRAPH_SUFFIX} extension."
    if problem:
        raise FreezeError(f"{path} is not a GraphDef: {problem}")
    return graph_def


def read_meta_graph_def(path: str) -> tuple[Any, str]:
    """Parse and sanity-check a MetaGraphDef, binary or else text; returns it and its format."""
    data = _read(path)
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
        data = _read(path)
    except CheckpointError:
        return None
    for as_text, suffix in ((False, ".pb"), (True, ".pbtxt")):
        graph_def = tf.compat.v1.GraphDef()
        if _parse(data, graph_def, as_text=as_text) is None and not graph_def_problem(graph_def):
            return ("GraphDef" if _variable_ops(graph_def) else "frozen GraphDef"), suffix
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
            if _node_of(source) not in names:
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
        return _first_line(error)
    except message.DecodeError as error:
        return f"{_first_line(error)} (a truncated file, or not a protocol buffer)"
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


def _all_nodes(graph_def: Any) -> Iterator[tuple[str | None, Any]]:
    for node in graph_def.node:
        yield None, node
    for function in graph_def.library.function:
        for node in function.node_def:
            yield function.signature.name, node


def _is_resource_placeholder(node: Any) -> bool:
    # `in` first: indexing a protobuf map of messages would add the missing key.
    return (
        node.op == "Placeholder"
        and "dtype" in node.attr
        and node.attr["dtype"].type == tf.resource.as_datatype_enum
    )


def _variable_ops(graph_def: Any) -> list[dict[str, Any]]:
    return [
        {"name": node.name, "op": node.op, "function": function}
        for function, node in _all_nodes(graph_def)
        if node.op in VARIABLE_OPS or (function is None and _is_resource_placeholder(node))
    ]


class _TensorLookup:
    """dtype and shape of graph tensors, from the graph imported (not run) into a `tf.Graph`.

    A graph TensorFlow cannot import (an op it does not know, say) still gets
    inspected; its tensors' dtypes and shapes are then unknown.
    """

    def __init__(self, graph_def: Any):
        self.graph: tf.Graph | None = tf.Graph()
        try:
            with self.graph.as_default():
                tf.compat.v1.import_graph_def(graph_def, name="")
        except (ValueError, TypeError, KeyError, tf.errors.OpError):
            self.graph = None

    def outputs_of(self, node_name: str) -> list[str]:
        if self.graph is None:
            return [f"{node_name}:0"]
        return [t.name for t in self.graph.get_operation_by_name(node_name).outputs]

    def describe(self, tensor: str) -> dict[str, Any]:
        tensor = tensor if ":" in tensor else f"{tensor}:0"
        dtype, shape = None, None
        if self.graph is not None:
            try:
                t = self.graph.get_tensor_by_name(tensor)
                dtype, shape = t.dtype.name, t.shape.as_list() if t.shape.rank is not None else None
            except (KeyError, ValueError):
                pass
        return {"name": _node_of(tensor), "tensor": tensor, "dtype": dtype, "shape": shape}


def _inputs(
    path: str, graph_def: Any, meta_graph: Any, lookup: _TensorLookup
) -> tuple[list[dict[str, Any]], str]:
    declared = _declared(path, graph_def, meta_graph, "inputs")
    if declared is not None:
        tensors, source = declared
        return [lookup.describe(t) for t in tensors], source
    inputs = []
    for node in graph_def.node:
        if node.op == "Placeholder" and not _is_resource_placeholder(node):
            shape = None
            if "shape" in node.attr and not node.attr["shape"].shape.unknown_rank:
                shape = [d.size if d.size >= 0 else None for d in node.attr["shape"].shape.dim]
            dtype = tf.as_dtype(node.attr["dtype"].type).name if "dtype" in node.attr else None
            inputs.append(
                {"name": node.name, "tensor": f"{node.name}:0", "dtype": dtype, "shape": shape}
            )
    return inputs, "placeholders"


def _outputs(
    path: str, graph_def: Any, meta_graph: Any, lookup: _TensorLookup
) -> tuple[list[dict[str, Any]], str]:
    declared = _declared(path, graph_def, meta_graph, "outputs")
    if declared is not None:
        tensors, source = declared
        return [lookup.describe(t) for t in tensors], source
    consumed = {_node_of(source) for node in graph_def.node for source in node.input}
    saver_nodes = {node.name for node in graph_def.node if node.op in _SAVER_OPS}
    sinks = [
        node.name
        for node in graph_def.node
        if node.name not in consumed
        and node.op not in _NOT_OUTPUT_OPS
        and not any(_node_of(source) in saver_nodes for source in node.input)
    ]
    return [lookup.describe(t) for name in sinks for t in lookup.outputs_of(name)], "sinks"


def _declared(
    path: str, graph_def: Any, meta_graph: Any, side: str
) -> tuple[list[str], str] | None:
    """The tensor names of `side` ("inputs" / "outputs") that the file declares, and where."""
    if meta_graph is not None:
        signature = _chosen_signature(meta_graph)
        if signature is not None:
            infos = getattr(meta_graph.signature_def[signature], side)
            return [infos[k].name for k in sorted(infos) if infos[k].name], "signature_def"
        if side in meta_graph.collection_def:
            values = meta_graph.collection_def[side].node_list.value
            if values:
                return list(values), "collections"
        return None
    sidecar = path + naming.SIDECAR_SUFFIX
    if not tf.io.gfile.exists(sidecar):
        return None
    try:
        with tf.io.gfile.GFile(sidecar, "r") as f:
            names = [entry["name"] for entry in json.load(f)[side]]
    except (ValueError, KeyError, TypeError, tf.errors.OpError):
        return None
    present = {node.name for node in graph_def.node}
    if not names or not all(isinstance(n, str) and n in present for n in names):
        return None
    return names, "sidecar"


def _chosen_signature(meta_graph: Any) -> str | None:
    keys = sorted(meta_graph.signature_def)
    if not keys:
        return None
    return "serving_default" if "serving_default" in keys else keys[0]


def _describe_meta_graph(meta_graph: Any) -> dict[str, Any]:
    saver_def = None
    if meta_graph.HasField("saver_def"):
        s = meta_graph.saver_def
        saver_def = {
            "filename_tensor_name": s.filename_tensor_name,
            "save_tensor_name": s.save_tensor_name,
            "restore_op_name": s.restore_op_name,
            "version": tf.compat.v1.train.SaverDef.CheckpointFormatVersion.Name(s.version),
        }
    return {
        "tags": list(meta_graph.meta_info_def.tags),
        "tensorflow_version": meta_graph.meta_info_def.tensorflow_version or None,
        "saver_def": saver_def,
        "collections": sorted(meta_graph.collection_def),
        "signatures": {
            key: {
                "method_name": sig.method_name,
                "inputs": {k: sig.inputs[k].name for k in sorted(sig.inputs)},
                "outputs": {k: sig.outputs[k].name for k in sorted(sig.outputs)},
            }
            for key, sig in sorted(meta_graph.signature_def.items())
        },
    }


# --- files -----------------------------------------------------------------------------------


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1]


def _node_of(tensor_or_input: str) -> str:
    """`name` of `name`, `name:1` or `^name`."""
    return tensor_or_input.lstrip("^").split(":", 1)[0]


def _require_file(path: str) -> None:
    if not tf.io.gfile.exists(path):
        raise CheckpointError(f"No such file: {path}")


def _read(path: str) -> bytes:
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    except tf.errors.OpError as error:
        raise CheckpointError(f"Cannot read {path}: {_first_line(error)}") from None


def _size(path: str) -> int:
    return tf.io.gfile.stat(path).length


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- text ------------------------------------------------------------------------------------


def format_report(report: Mapping[str, Any]) -> str:
    """`report` as aligned, human-readable text."""
    if report["kind"] == "checkpoint":
        return _format_checkpoint(report)
    return _format_graph(report)


def _format_checkpoint(report: Mapping[str, Any]) -> str:
    step = "unknown"
    if report["step"] is not None:
        step = f"{report['step']} (from {report['step_source'].replace('_', ' ')})"
    lines = _fields([("checkpoint", report["prefix"]), ("step", step)])
    lines += _fields([(
        "variables", f"{report['variable_count']}, {report['total_bytes']:,} bytes"
    )])
    rows = [
        [v["key"], _shape(v["shape"]), v["dtype"], "?" if v["bytes"] is None else f"{v['bytes']:,}"]
        for v in report["variables"]
    ]
    lines += _table(["key", "shape", "dtype", "bytes"], rows, right=(3,))
    total = sum(f["bytes"] for f in report["files"])
    lines += _fields([("files", f"{len(report['files'])}, {total:,} bytes")])
    lines += _table(None, [[f["path"], f"{f['bytes']:,}"] for f in report["files"]], right=(1,))
    if report["checkpoints"] is not None:
        lines += _fields([("checkpoints", f"{len(report['checkpoints'])} in {report['path']}")])
        lines += _table(
            None,
            [
                [
                    c["prefix"],
                    "step ?" if c["step"] is None else f"step {c['step']}",
                    "(inspected)" if c["prefix"] == report["prefix"] else "",
                ]
                for c in report["checkpoints"]
            ],
        )
    return "\n".join(lines)


def _format_graph(report: Mapping[str, Any]) -> str:
    kind = "MetaGraphDef" if report["kind"] == "meta_graph" else "GraphDef"
    functions = ", ".join(f"{f['name']} ({f['node_count']} nodes)" for f in report["functions"])
    frozen = "yes" if report["frozen"] else f"no, {len(report['variable_ops'])} variable op(s)"
    lines = _fields([
        ("file", f"{report['path']} ({report['format']} {kind}, {report['bytes']:,} bytes)"),
        ("nodes", str(report["node_count"])),
        ("frozen", frozen),
        ("functions", functions or "none"),
    ])
    for side in ("inputs", "outputs"):
        entries = report[side]
        lines += _fields([(side, f"{len(entries)} (from {report[side + '_source']})")])
        lines += _table(
            None, [[e["tensor"], e["dtype"] or "?", _shape(e["shape"])] for e in entries]
        )
    if report["variable_ops"]:
        lines += _fields([("variable ops", "")])
        lines += _table(
            None,
            [
                [v["name"], v["op"], f"in function {v['function']}" if v["function"] else ""]
                for v in report["variable_ops"]
            ],
        )
    lines += _fields([("ops", f"{len(report['ops'])} kinds")])
    lines += _table(None, [[op, str(count)] for op, count in report["ops"].items()], right=(1,))
    meta = report["meta_graph"]
    if meta is not None:
        saver = meta["saver_def"]
        lines += _fields([
            ("tags", ", ".join(meta["tags"]) or "none"),
            ("tensorflow", meta["tensorflow_version"] or "unknown"),
            ("collections", ", ".join(meta["collections"]) or "none"),
            ("saver", "none" if saver is None else f"{saver['version']}"),
        ])
        if saver is not None:
            lines += _table(None, [[k, saver[k]] for k in saver if k != "version"])
        lines += _fields([("signatures", str(len(meta["signatures"])))])
        for key, sig in meta["signatures"].items():
            lines.append(f"  {key} ({sig['method_name']})")
            rows = [
                [side, name, tensor]
                for side in ("inputs", "outputs")
                for name, tensor in sig[side].items()
            ]
            lines += _table(None, rows, indent=4)
    return "\n".join(lines)


def _fields(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"{label + ':':<14}{value}".rstrip() for label, value in pairs]


def _table(
    header: list[str] | None,
    rows: list[list[str]],
    *,
    right: Container[int] = (),
    indent: int = 2,
) -> list[str]:
    """Rows of cells, columns padded to a common width; `right` columns right-aligned."""
    if not rows:
        return []
    rows = ([[h.upper() for h in header]] if header else []) + rows
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append((" " * indent + "  ".join(cells)).rstrip())
    return lines


def _shape(shape: list[int | None] | None) -> str:
    if shape is None:
        return "<unknown rank>"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
