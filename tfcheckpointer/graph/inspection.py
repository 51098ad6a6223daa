"""What a TF1 model file holds, read without running it: `tfcheckpointer inspect PATH`.

`inspect_path` takes a checkpoint directory, a checkpoint prefix (or its
`.index` file), a GraphDef (`.pb` binary, `.pbtxt` text) or a MetaGraphDef
(`.meta`) and returns one JSON-ready dict; `cli.inspect.format_report`
renders it as aligned text. Files are parsed, never executed. A checkpoint's
dict is `checkpoint_inspection`'s; a graph file's keys are stable too:

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
                     `nodes.VARIABLE_OPS` (in the graph or its functions) and
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
- `sidecar`: the `<file>.json` that `publish_frozen_graph` writes beside a frozen
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
from typing import Any

import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.errors import CheckpointError
from tfcheckpointer.graph.checkpoint_inspection import inspect_checkpoint, inspect_checkpoint_directory
from tfcheckpointer.graph.files import (
    GRAPH_DEF_SUFFIXES,
    META_GRAPH_SUFFIX,
    file_size,
    read_graph_def,
    read_meta_graph_def,
    suffix,
)
from tfcheckpointer.graph.locate import refuse_data_file
from tfcheckpointer.graph.nodes import VARIABLE_OPS, is_resource_placeholder, node_of, variable_nodes
from tfcheckpointer.graph.signature import SERVING_SIGNATURE_KEY

_SAVER_OPS = frozenset(
    {"SaveV2", "RestoreV2", "SaveSlices", "Save", "Restore", "RestoreSlice", "MergeV2Checkpoints"}
)
# Sinks of these ops are bookkeeping, not results.
_NOT_OUTPUT_OPS = VARIABLE_OPS | _SAVER_OPS | {
    "NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "Assert"
}


def inspect_path(path: str) -> dict[str, Any]:
    """The facts about `path`, a checkpoint (directory or prefix) or a graph file."""
    path = os.fspath(path)
    refuse_data_file(path)
    if tf.io.gfile.isdir(path):
        return inspect_checkpoint_directory(path)
    if suffix(path) in GRAPH_DEF_SUFFIXES or suffix(path) == META_GRAPH_SUFFIX:
        if not tf.io.gfile.exists(path):
            raise CheckpointError(f"No such file: {path}")
        return inspect_graph_file(path)
    return inspect_checkpoint(path)


# --- graph files -----------------------------------------------------------------------------


def inspect_graph_file(path: str) -> dict[str, Any]:
    """The structure of a GraphDef (`.pb`, `.pbtxt`) or MetaGraphDef (`.meta`) file."""
    if suffix(path) == META_GRAPH_SUFFIX:
        meta_graph, fmt = read_meta_graph_def(path)
        graph_def = meta_graph.graph_def
    else:
        meta_graph, fmt = None, GRAPH_DEF_SUFFIXES[suffix(path)]
        graph_def = read_graph_def(path)
    lookup = _TensorLookup(graph_def)
    inputs, inputs_source = _side("inputs", path, graph_def, meta_graph, lookup)
    outputs, outputs_source = _side("outputs", path, graph_def, meta_graph, lookup)
    variable_ops = _variable_ops(graph_def)
    ops = collections.Counter(node.op for node in graph_def.node)
    return {
        "kind": "meta_graph" if meta_graph is not None else "graph_def",
        "path": path,
        "format": fmt,
        "bytes": file_size(path),
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


def _variable_ops(graph_def: Any) -> list[dict[str, Any]]:
    return [
        {"name": node.name, "op": node.op, "function": function}
        for function, node in variable_nodes(graph_def)
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
        return {"name": node_of(tensor), "tensor": tensor, "dtype": dtype, "shape": shape}


def _side(
    side: str, path: str, graph_def: Any, meta_graph: Any, lookup: _TensorLookup
) -> tuple[list[dict[str, Any]], str]:
    """`side`'s ("inputs" / "outputs") tensors and where they come from: declared, else found."""
    declared = _declared(path, graph_def, meta_graph, side)
    if declared is not None:
        tensors, source = declared
        return [lookup.describe(t) for t in tensors], source
    if side == "inputs":
        return _placeholders(graph_def), "placeholders"
    return [lookup.describe(t) for name in _sinks(graph_def) for t in lookup.outputs_of(name)], "sinks"


def _placeholders(graph_def: Any) -> list[dict[str, Any]]:
    inputs = []
    for node in graph_def.node:
        if node.op == "Placeholder" and not is_resource_placeholder(node):
            shape = None
            if "shape" in node.attr and not node.attr["shape"].shape.unknown_rank:
                shape = [d.size if d.size >= 0 else None for d in node.attr["shape"].shape.dim]
            dtype = tf.as_dtype(node.attr["dtype"].type).name if "dtype" in node.attr else None
            inputs.append(
                {"name": node.name, "tensor": f"{node.name}:0", "dtype": dtype, "shape": shape}
            )
    return inputs


def _sinks(graph_def: Any) -> list[str]:
    consumed = {node_of(source) for node in graph_def.node for source in node.input}
    saver_nodes = {node.name for node in graph_def.node if node.op in _SAVER_OPS}
    return [
        node.name
        for node in graph_def.node
        if node.name not in consumed
        and node.op not in _NOT_OUTPUT_OPS
        and not any(node_of(source) in saver_nodes for source in node.input)
    ]


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
    return SERVING_SIGNATURE_KEY if SERVING_SIGNATURE_KEY in keys else keys[0]


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
