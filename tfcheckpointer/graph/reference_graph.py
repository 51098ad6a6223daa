"""The GraphDef of a `.meta` in the form TF1 tools expect: reference variables named by key.

TF1 tools given a bare GraphDef (no `SaverDef`) restore by name: each
checkpoint key maps to the tensor `<key>:0`. That works for reference
variables (`VariableV2`, read through `Identity`) and fails for resource
variables (TensorFlow's `freeze_graph --input_graph`: "IndexError: tuple index
out of range"). `reference_graph_def` rewrites the resource form that
`metagraph.build_meta_graph` exports: `VarHandleOp` becomes `VariableV2`,
`ReadVariableOp` an `Identity`, `ResourceGather` a `GatherV2` of the read,
the zero initialiser's `AssignVariableOp` an `Assign`, and the Saver's
subgraph goes (a GraphDef has no `SaverDef` to name it; the consumer builds
its own). A functional `While` that captured variable handles (a recurrent
layer) gets the values read before the loop instead.
A graph using a handle any other way keeps the resource form, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from tfcheckpointer.graph.nodes import node_of

logger = logging.getLogger("tfcheckpointer")

_LOOPS = ("While", "StatelessWhile")


class _Unsupported(Exception):
    """A use of a variable handle this rewrite has no reference equivalent for."""


def reference_graph_def(meta: tf.compat.v1.MetaGraphDef) -> tf.compat.v1.GraphDef:
    """`meta`'s GraphDef with reference variables, or its resource form (warned) where none fits.

    Args:
        meta: A MetaGraphDef of `metagraph.build_meta_graph`: resource
            variables named by checkpoint key, a Saver over them.
    """
    graph_def = tf.compat.v1.GraphDef()
    graph_def.CopyFrom(meta.graph_def)
    saver_scope = meta.saver_def.filename_tensor_name.rsplit("/", 1)[0] + "/"
    kept = [n for n in graph_def.node if not n.name.startswith(saver_scope)]
    del graph_def.node[:]
    graph_def.node.extend(kept)
    resource_form = tf.compat.v1.GraphDef()
    resource_form.CopyFrom(graph_def)
    try:
        _to_reference_variables(graph_def)
    except _Unsupported as reason:
        logger.warning(
            "graph file keeps resource variables (%s), so TF1 tools that restore by name "
            "cannot use it; use the .meta (import_meta_graph, freeze_graph --input_meta_graph) "
            "or `tfcheckpointer freeze --graph`.", reason,
        )
        return resource_form
    return graph_def


def _to_reference_variables(graph_def: Any) -> None:
    variables = {n.name: n for n in graph_def.node if n.op == "VarHandleOp"}
    functions = {f.signature.name: f for f in graph_def.library.function}
    for node in list(graph_def.node):  # a gather's rewrite adds a node
        handles = [
            i for i, source in enumerate(node.input)
            if not source.startswith("^") and node_of(source) in variables
        ]
        if not handles or node.op == "VarHandleOp":
            continue
        if node.op == "ReadVariableOp":
            _read_as_identity(node)
        elif node.op == "AssignVariableOp":
            node.op = "Assign"
            node.attr["T"].type = node.attr.pop("dtype").type
            node.attr["validate_shape"].b = True
            node.attr["use_locking"].b = True
        elif node.op == "VarIsInitializedOp":
            node.op = "IsVariableInitialized"
            node.attr["dtype"].type = variables[node_of(node.input[0])].attr["dtype"].type
        elif node.op == "ResourceGather" and handles == [0]:
            _gather_from_read(node, graph_def)
        elif node.op in _LOOPS:
            _values_into_loop(node, handles, variables, functions, graph_def)
        else:
            raise _Unsupported(f"{node.op} {node.name!r} takes a variable handle")
    for node in variables.values():
        shape, dtype = node.attr["shape"], node.attr["dtype"]
        container, shared_name = node.attr["container"], node.attr["shared_name"]
        node.op = "VariableV2"
        node.ClearField("attr")
        for key, value in (("shape", shape), ("dtype", dtype), ("container", container),
                           ("shared_name", shared_name)):
            node.attr[key].CopyFrom(value)


def _read_as_identity(node: Any) -> None:
    node.op = "Identity"
    node.attr["T"].type = node.attr.pop("dtype").type


def _gather_from_read(node: Any, graph_def: Any) -> None:
    """`ResourceGather(handle, indices)` -> `GatherV2(read, indices, axis=batch_dims)`."""
    read = _read_of(node_of(node.input[0]), graph_def, f"gather {node.name!r}")
    batch_dims = node.attr["batch_dims"].i
    axis = graph_def.node.add(name=f"{node.name}/axis", op="Const")
    axis.attr["dtype"].type = tf.int32.as_datatype_enum
    axis.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(batch_dims, tf.int32))
    dtype, indices = node.attr["dtype"].type, node.attr["Tindices"].type
    node.op = "GatherV2"
    node.ClearField("attr")
    node.attr["Tparams"].type = dtype
    node.attr["Tindices"].type = indices
    node.attr["Taxis"].type = tf.int32.as_datatype_enum
    node.attr["batch_dims"].i = batch_dims
    node.input[0] = read
    node.input.insert(2, axis.name)


def _read_of(variable: str, graph_def: Any, user: str) -> str:
    """The node that reads `variable` at top level, for an op that needs its value."""
    read = f"{variable}/Read/ReadVariableOp"
    if not any(n.name == read for n in graph_def.node):
        raise _Unsupported(f"variable {variable!r} has no read to pass {user}")
    return read


def _values_into_loop(
    loop: Any,
    handles: list[int],
    variables: Mapping[str, Any],
    functions: Mapping[str, Any],
    graph_def: Any,
) -> None:
    """Pass the loop the variables' values where it was passed their handles.

    The loop only reads them (inference), so its body's `ReadVariableOp`s of
    those arguments become identities of the values, and the arguments and
    the loop's pass-through outputs change type to the variables' dtype.
    """
    users = [n for n in graph_def.node if n is not loop and any(
        node_of(s) == loop.name for s in n.input)]
    for user in users:
        if any(node_of(s) == loop.name and _output_index(s) in handles for s in user.input):
            raise _Unsupported(f"{user.name!r} reads a variable handle out of loop {loop.name!r}")
    reads = {}
    for i in handles:
        name = node_of(loop.input[i])
        reads[i] = (_read_of(name, graph_def, f"loop {loop.name!r}"), variables[name])
    for attr in ("cond", "body"):
        function = functions.get(loop.attr[attr].func.name)
        if function is None:
            raise _Unsupported(f"loop {loop.name!r} has no {attr} function")
        _function_takes_values(function, reads, returns=attr == "body")
    for i, (read, variable) in reads.items():
        loop.input[i] = read
        loop.attr["T"].list.type[i] = variable.attr["dtype"].type
        loop.attr["output_shapes"].list.shape[i].CopyFrom(variable.attr["shape"].shape)
    loop.attr.pop("_read_only_resource_inputs", None)


def _function_takes_values(function: Any, reads: Mapping[int, tuple[str, Any]], *, returns: bool) -> None:
    arguments = {}
    for i, (_, variable) in reads.items():
        argument = function.signature.input_arg[i]
        argument.type = variable.attr["dtype"].type
        if i in function.arg_attr:
            del function.arg_attr[i]  # its shape hint is a handle's
        arguments[argument.name] = argument
        if returns:
            output = function.signature.output_arg[i]
            if node_of(function.ret[output.name]) != argument.name:
                raise _Unsupported(f"{function.signature.name} changes a variable handle")
            output.type = argument.type
    converted = set()
    for node in function.node_def:
        if not any(node_of(s) in arguments for s in node.input if not s.startswith("^")):
            continue
        if node.op != "ReadVariableOp":
            raise _Unsupported(f"{node.op} {node.name!r} in {function.signature.name} takes a "
                               "variable handle")
        _read_as_identity(node)
        converted.add(node.name)
    # Inside a function an output is named by op argument: `value` of a read, `output` of Identity.
    for node in function.node_def:
        for i, source in enumerate(node.input):
            name, _, rest = source.partition(":")
            if name in converted and rest.startswith("value:"):
                node.input[i] = f"{name}:output:{rest[len('value:'):]}"


def _output_index(source: str) -> int:
    """The output a node input reads: `loop:3` -> 3, `loop` -> 0."""
    parts = source.lstrip("^").split(":")
    return int(parts[-1]) if len(parts) > 1 else 0
