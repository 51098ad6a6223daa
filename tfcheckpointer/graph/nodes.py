"""Facts about the nodes of a GraphDef: variables, unfreezable state, devices, size."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import tensorflow as tf

from tfcheckpointer.errors import FreezeError

PROTOBUF_LIMIT_BYTES = 2**31
"""A serialized protocol buffer, hence a GraphDef, must stay under 2 GiB: at most
2**31 - 1 bytes, the most protobuf serializes and parses (`INT_MAX`)."""

# Stateful resources a GraphDef cannot carry as constants.
UNFREEZABLE_OPS = re.compile(r"HashTable|LookupTable|InitializeTable|PyFunc")
# Ops that mean a variable was left in the graph.
VARIABLE_OPS = frozenset(
    {
        "VarHandleOp", "ReadVariableOp", "VariableV2", "Variable", "VarIsInitializedOp",
        "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
        "Assign", "AssignAdd", "AssignSub", "ResourceGather", "ResourceScatterUpdate",
    }
)


def all_nodes(graph_def: Any) -> Iterator[tuple[str | None, Any]]:
    """`(function name or None, node)` for the graph's nodes, then its functions' nodes."""
    for node in graph_def.node:
        yield None, node
    for function in graph_def.library.function:
        for node in function.node_def:
            yield function.signature.name, node


def node_of(tensor_or_input: str) -> str:
    """`name` of `name`, `name:1` or `^name`."""
    return tensor_or_input.lstrip("^").split(":", 1)[0]


def is_resource_placeholder(node: Any) -> bool:
    """A placeholder of dtype resource: a captured variable handle, not an input."""
    # `in` first: indexing a protobuf map of messages would add the missing key.
    return (
        node.op == "Placeholder"
        and "dtype" in node.attr
        and node.attr["dtype"].type == tf.resource.as_datatype_enum
    )


def variable_nodes(graph_def: Any) -> list[tuple[str | None, Any]]:
    """`(function, node)` of every variable op, and every resource placeholder of the graph."""
    return [
        (function, node)
        for function, node in all_nodes(graph_def)
        if node.op in VARIABLE_OPS or (function is None and is_resource_placeholder(node))
    ]


# Ops that write a variable: an inference pass with them (a stateful RNN keeping its
# state between batches) needs the variable, which freezing turns into a constant.
ASSIGN_OPS = frozenset(
    {
        "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
        "ResourceScatterUpdate", "ResourceScatterAdd", "ResourceScatterSub",
    }
)


def assigning_ops(graph_def: Any) -> list[str]:
    """The op types that write variables, in the graph or its functions."""
    return sorted({n.op for _, n in all_nodes(graph_def) if n.op in ASSIGN_OPS})


def unfreezable_ops(graph_def: Any) -> list[str]:
    """The op types of state a GraphDef cannot hold as constants (lookup tables, Python)."""
    return sorted({n.op for _, n in all_nodes(graph_def) if UNFREEZABLE_OPS.search(n.op)})


def check_no_variables(graph_def: Any) -> None:
    """Raise if a variable op or a resource placeholder is left in the graph."""
    leftovers = sorted(
        {f"{n.name} ({n.op})" for function, n in variable_nodes(graph_def) if function is None}
    )
    if leftovers:
        raise FreezeError("Variables are left in the frozen graph: " + ", ".join(leftovers))


def prune_unused_functions(graph_def: Any) -> list[str]:
    """Drop library functions no node calls, directly or through other functions; return their names.

    `convert_variables_to_constants` keeps the whole library, so a TF1 graph's
    dead branches (the `global_step_cond_*` of `get_or_create_global_step`)
    would stay, with the variable reads in them.
    """
    library = {f.signature.name: f for f in graph_def.library.function}
    # A kept function's registered gradient stays registered, so its function stays too.
    gradient_of = {g.function_name: g.gradient_func for g in graph_def.library.gradient}
    used: set[str] = set()
    pending = list(_called_functions(graph_def.node, library))
    while pending:
        name = pending.pop()
        if name not in used:
            used.add(name)
            pending.extend(_called_functions(library[name].node_def, library))
            if gradient_of.get(name) in library:
                pending.append(gradient_of[name])
    dead = sorted(set(library) - used)
    if dead:
        kept = [f for f in graph_def.library.function if f.signature.name in used]
        gradients = [g for g in graph_def.library.gradient if g.function_name in used]
        del graph_def.library.function[:]
        graph_def.library.function.extend(kept)
        del graph_def.library.gradient[:]
        graph_def.library.gradient.extend(gradients)
    return dead


def _called_functions(nodes: Any, library: dict[str, Any]) -> Iterator[str]:
    """Library functions `nodes` call: as their op, or in a function-valued attribute (If, While...)."""
    for node in nodes:
        if node.op in library:
            yield node.op
        for value in node.attr.values():
            names = [value.func.name] if value.HasField("func") else []
            names += [f.name for f in value.list.func]
            yield from (name for name in names if name in library)


def clear_devices(graph_def: Any) -> None:
    """Remove device strings, so the graph runs wherever it is loaded."""
    for _, node in all_nodes(graph_def):
        node.device = ""


def check_graph_size(graph_def: Any, size_limit: int = PROTOBUF_LIMIT_BYTES) -> None:
    if graph_def.ByteSize() >= size_limit:
        raise FreezeError(
            f"The frozen graph would be {graph_def.ByteSize():,} bytes; it must stay under "
            f"{size_limit:,} bytes (the 2 GiB protobuf limit)."
        )
