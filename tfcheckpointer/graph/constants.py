"""Variables into constants without reading them: the skeleton of a frozen graph.

TensorFlow's converter (`convert_to_constants`) reads every variable into
NumPy, copies each into a `TensorProto`, the protos into a new GraphDef, and
(for a concrete function) imports that into a new graph: about ten copies of
the weights. Here the same converter rewrites the graph (each variable or
captured handle a `Const`, each read an `Identity`, function signatures
retyped) with an empty placeholder value in place of every variable's; the
values are left to `stream.StreamedGraph`, which reads one variable at a time
while the file is written. Small or non-numeric values (a scalar, strings)
are read now and stored as the converter stores them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.python.framework import convert_to_constants as converter
from tensorflow.python.framework import graph_util, tensor_util

from tfcheckpointer.graph.nodes import all_nodes
from tfcheckpointer.graph.stream import ConstSource, StreamedGraph, is_streamable


def _unread(dtype: int, number: int) -> np.ndarray:
    """The value the converter is given for the `number`th variable, read later: no elements.

    Its shape `[0, 0, 0, number + 1]` is what the converter writes into the
    `output_shapes` of a `While` the variable enters; `_restore_shapes` finds
    it there and writes the variable's real shape instead.
    """
    return np.zeros((0, 0, 0, number + 1), tf.as_dtype(dtype).as_numpy_dtype)


def _restore_shapes(graph_def: Any, shapes: Sequence[tuple[int, ...]]) -> None:
    """Give each `While`'s `output_shapes` entry made from `_unread(..., number)` the real shape."""
    nodes = [node for _, node in all_nodes(graph_def) if node.op in ("While", "StatelessWhile")]
    for node in nodes:
        for shape in node.attr["output_shapes"].list.shape if "output_shapes" in node.attr else ():
            dims = [d.size for d in shape.dim]
            if len(dims) == 4 and dims[:3] == [0, 0, 0] and 0 < dims[3] <= len(shapes):
                shape.CopyFrom(tf.TensorShape(shapes[dims[3] - 1]).as_proto())


class _FunctionSkeletonData(converter._FunctionConverterDataInEager):  # pylint: disable=protected-access
    """The eager converter's data, with each captured variable's value left unread."""

    unread: list[tf.Variable]

    def _eval(self, tensor: Any) -> Any:
        if isinstance(tensor, tf.Variable):
            self.__dict__.setdefault("unread", []).append(tensor)
            return _unread(tensor.dtype.as_datatype_enum, len(self.unread) - 1)
        return tensor.numpy()


class _SessionSkeletonData(converter._ConverterData):  # pylint: disable=protected-access
    """`_SessionConverterData` without its `session.run` of every variable at once.

    `reads` maps each variable node to the tensor that reads it, as TensorFlow's
    own session conversion reads it.
    """

    def __init__(self, graph_def: Any, output_node_names: Sequence[str]):
        super().__init__(graph_util.extract_sub_graph(graph_def, list(output_node_names)))
        self.reads: dict[str, str] = {}
        for node in self.graph_def.node:
            if node.op in ("Variable", "VariableV2", "VarHandleOp"):
                suffix = "/Read/ReadVariableOp" if node.op == "VarHandleOp" else ""
                self.reads[node.name] = node.name + suffix + ":0"
                dtype = node.attr["dtype"].type
                self._tensor_data[node.name] = converter._TensorData(  # pylint: disable=protected-access
                    numpy=_unread(dtype, len(self.reads) - 1), dtype=dtype, index=None
                )


_Read = tuple[tf.DType, "tuple[int, ...]", Callable[[], Any]]
"""A variable's dtype, its shape and how to read it."""


def _fill(graph_def: Any, reads: dict[str, _Read]) -> StreamedGraph:
    """Give each converted variable's `Const` its value (small ones) or a source (large ones).

    A large one keeps a value with its shape and no content, so that the
    graph still imports with the right shapes; `StreamedGraph` drops it.
    """
    sources: dict[str, ConstSource] = {}
    for node in graph_def.node:
        if node.name not in reads or node.op != "Const":
            continue
        dtype, shape, read = reads[node.name]
        if is_streamable(dtype, shape):
            sources[node.name] = ConstSource(dtype, shape, read)
            node.attr["value"].tensor.CopyFrom(
                tensor_pb2.TensorProto(
                    dtype=dtype.as_datatype_enum, tensor_shape=tf.TensorShape(shape).as_proto()
                )
            )
        else:
            value = np.asarray(read())
            node.attr["value"].tensor.CopyFrom(
                tensor_util.make_tensor_proto(value, dtype, value.shape)
            )
    return StreamedGraph(graph_def, sources)


def _drop_values(streamed: StreamedGraph) -> StreamedGraph:
    """`streamed` with its sources' placeholder values removed from the skeleton."""
    for node in streamed.skeleton.node:
        if node.name in streamed.sources:
            del node.attr["value"]
    return streamed


def function_skeleton(concrete: Any) -> StreamedGraph:
    """`concrete` frozen as `convert_variables_to_constants_v2(concrete, lower_control_flow=False)`
    freezes it, its variables' values left to be streamed.

    Raises what the converter raises (`ValueError`, `TypeError`, `tf.errors.OpError`).
    """
    data = _FunctionSkeletonData(func=concrete, lower_control_flow=False, aggressive_inlining=False)
    by_index = {
        index: variable
        for variable in concrete.graph.variables
        for index, captured in enumerate(concrete.captured_inputs)
        if variable.handle is captured
    }
    reads: dict[str, _Read] = {}
    for name, tensor_data in data.tensor_data.items():
        variable = by_index.get(tensor_data.index)
        if variable is not None:
            reads[name] = (variable.dtype, _shape(variable), _reader(variable))
    graph_def, converted = converter._replace_variables_by_constants(data)  # pylint: disable=protected-access
    _restore_shapes(graph_def, [_shape(v) for v in getattr(data, "unread", [])])
    # The converter's own last step: the graph as a concrete function (pruned, imported).
    # With the values' shapes but no content, the import costs nothing.
    _fill(graph_def, reads)
    frozen = converter._construct_concrete_function(concrete, graph_def, converted)  # pylint: disable=protected-access
    skeleton = frozen.graph.as_graph_def()
    sources = {
        node.name: ConstSource(*reads[node.name])
        for node in skeleton.node
        if node.name in reads and node.op == "Const" and is_streamable(*reads[node.name][:2])
    }
    return _drop_values(StreamedGraph(skeleton, sources))


def _shape(variable: tf.Variable) -> tuple[int, ...]:
    """The variable's shape; a shape it leaves open is its value's, as the converter freezes it."""
    if variable.shape.is_fully_defined():
        return tuple(variable.shape)
    return tuple(variable.read_value().shape)


def _reader(variable: tf.Variable) -> Callable[[], Any]:
    # A read aliases the variable's buffer on CPU; `np.asarray` of it does not copy.
    return lambda: np.asarray(variable.read_value())


def session_skeleton(session: Any, graph_def: Any, output_node_names: Sequence[str]) -> StreamedGraph:
    """`graph_def` frozen as `tf.compat.v1.graph_util.convert_variables_to_constants(session,
    graph_def, output_node_names)` freezes it, each variable read from `session` when streamed.

    Raises what the converter raises (`ValueError`, `tf.errors.OpError`).
    """
    data = _SessionSkeletonData(graph_def, output_node_names)
    reads: dict[str, _Read] = {}
    nodes = {node.name: node for node in data.graph_def.node}
    for name, tensor in data.reads.items():
        shape = tf.TensorShape(nodes[name].attr["shape"].shape)
        read = functools.partial(session.run, tensor)
        # A shape the graph leaves open is the value's: read now, as the converter would.
        known = tuple(shape.as_list()) if shape.is_fully_defined() else np.shape(read())
        reads[name] = (tf.as_dtype(nodes[name].attr["dtype"].type), known, read)
    graph_def, _ = converter._replace_variables_by_constants(data)  # pylint: disable=protected-access
    _restore_shapes(graph_def, [shape for _, shape, _ in reads.values()])
    return _drop_values(_fill(graph_def, reads))
