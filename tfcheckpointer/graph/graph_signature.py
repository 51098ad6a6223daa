"""The inputs and outputs to freeze in a TF1 graph: as configured, or as its `.meta` declares them."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from tfcheckpointer.config.schema import FreezeConfig
from tfcheckpointer.errors import FreezeError
from tfcheckpointer.graph.bind import unbound_switch_error
from tfcheckpointer.graph.nodes import is_resource_placeholder, node_of
from tfcheckpointer.graph.signature import (
    INPUTS_COLLECTION,
    OUTPUTS_COLLECTION,
    SERVING_SIGNATURE_KEY,
    ModelSignature,
    TensorInfo,
)


def meta_signature(
    graph: tf.Graph, graph_def: Any, meta_graph: Any, meta: str, config: FreezeConfig
) -> ModelSignature:
    """The inputs and outputs to freeze: as configured, else as the `.meta` declares them."""
    declared_inputs = _declared(meta_graph, INPUTS_COLLECTION, "inputs", meta)
    declared_outputs = _declared(meta_graph, OUTPUTS_COLLECTION, "outputs", meta)
    output_names = list(config.output_names or declared_outputs)
    if not output_names:
        raise FreezeError(
            f"{meta} declares no outputs (no `{OUTPUTS_COLLECTION}` collection, no "
            f"`{SERVING_SIGNATURE_KEY}` signature). HINT: pass --output-names."
        )
    names = {node.name for node in graph_def.node}
    for name in output_names:
        require_node(name, names, "output", meta, declared_outputs)
    for name in config.input_names or ():
        require_node(name, names, "input", meta, declared_inputs)
    needed = subgraph_nodes(graph_def, output_names)
    if config.input_names is not None:
        input_names = list(config.input_names)
    else:
        # A declared input that is bound is a constant now, no input.
        input_names = [
            name for name in declared_inputs if name in needed and name not in config.constants
        ]
    # Placeholders the outputs read must be fed, named or not; but a bool one is a
    # training switch, which every consumer would have to feed.
    unnamed = [
        node
        for node in graph_def.node
        if node.name in needed
        and node.op == "Placeholder"
        and not is_resource_placeholder(node)
        and node.name not in input_names
    ]
    for node in unnamed:
        if node.attr["dtype"].type == tf.bool.as_datatype_enum:
            raise unbound_switch_error(node.name, meta)
    input_names += [node.name for node in unnamed]
    shapes = _signature_shapes(meta_graph)
    return ModelSignature(
        tuple(tensor_info(graph, name, shapes) for name in input_names),
        tuple(tensor_info(graph, name, shapes) for name in output_names),
    )


def _declared(meta_graph: Any, collection: str, side: str, meta: str) -> list[str]:
    """Node names of the `inputs` / `outputs` collection, else of the serving signature."""
    tensors: list[str] = []
    if collection in meta_graph.collection_def:
        tensors = list(meta_graph.collection_def[collection].node_list.value)
    if not tensors and SERVING_SIGNATURE_KEY in meta_graph.signature_def:
        infos = getattr(meta_graph.signature_def[SERVING_SIGNATURE_KEY], side)
        tensors = [infos[key].name for key in sorted(infos) if infos[key].name]
    other = [t for t in tensors if ":" in t and not t.endswith(":0")]
    if other:
        raise FreezeError(
            f"{meta} declares {side} {other}, which are not the first output of their node; "
            f"a frozen graph's {side} are named by node. HINT: pass --{side[:-1]}-names."
        )
    return [node_of(tensor) for tensor in tensors]


def _signature_shapes(meta_graph: Any) -> dict[str, tuple[int | None, ...]]:
    """Tensor shapes the serving signature states, for tensors the graph no longer knows."""
    shapes = {}
    for signature in meta_graph.signature_def.values():
        for info in [*signature.inputs.values(), *signature.outputs.values()]:
            if not info.tensor_shape.unknown_rank:
                shapes[info.name] = tuple(
                    d.size if d.size >= 0 else None for d in info.tensor_shape.dim
                )
    return shapes


def tensor_info(
    graph: tf.Graph, name: str, shapes: Mapping[str, tuple[int | None, ...]]
) -> TensorInfo:
    tensor = graph.get_tensor_by_name(f"{name}:0")
    if tensor.shape.rank is not None:
        shape = tuple(tensor.shape.as_list())
    else:
        shape = shapes.get(tensor.name)
    return TensorInfo(name, tensor.dtype.name, shape)  # type: ignore[arg-type]


def require_node(
    name: str,
    names: set[str],
    kind: str,
    meta: str,
    declared: Sequence[str],
    *,
    option: str | None = None,
) -> None:
    """Raise unless `name` is a node; the HINT names `option` (default: the CLI flag)."""
    if name in names:
        return
    candidates = sorted(n for n in names if not n.startswith("save/"))
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    text = f"{kind.capitalize()} name {name!r} is not a node of {meta}."
    if close:
        text += " Closest: " + ", ".join(map(repr, close)) + "."
    if declared:
        text += f" Its declared {kind}s: " + ", ".join(map(repr, declared)) + "."
    option = option or f"--{kind}-names"
    raise FreezeError(text + f" HINT: give {option} node names of that graph.")


def subgraph_nodes(graph_def: Any, outputs: Sequence[str]) -> set[str]:
    """Every node that `outputs` depend on, themselves included."""
    by_name = {node.name: node for node in graph_def.node}
    seen: set[str] = set()
    pending = list(outputs)
    while pending:
        name = pending.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        pending.extend(node_of(source) for source in by_name[name].input)
    return seen


def check_inputs_used(signature: ModelSignature, needed: set[str], meta: str) -> None:
    unused = [i.name for i in signature.inputs if i.name not in needed]
    if unused:
        raise FreezeError(
            f"Input(s) {unused} of {meta} do not feed the outputs "
            f"{[o.name for o in signature.outputs]}. HINT: pass --input-names the outputs read."
        )
