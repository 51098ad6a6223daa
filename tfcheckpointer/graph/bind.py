"""Binding a TF1 graph's placeholders to constants before freezing (`freeze.constants`).

A TF1 model switches between training and inference on a placeholder
(`placeholder_with_default(False, [], name="is_training")` into
`batch_normalization(training=...)`, `dropout(training=...)`). Frozen as is,
the graph keeps both branches and the switch as an input. Binding the
placeholder to a `Const` makes the switch's predicate constant, so that
`optimize.prune_control_flow` can drop the branch not taken.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from tfcheckpointer.errors import FreezeError

logger = logging.getLogger("tfcheckpointer")

PLACEHOLDER_OPS = ("Placeholder", "PlaceholderWithDefault")


def bind_placeholders(
    graph_def: Any, constants: Mapping[str, bool | int | float], *, label: str
) -> tuple[Any, dict[str, np.ndarray]]:
    """A copy of `graph_def` with each placeholder named in `constants` made a `Const`.

    Args:
        graph_def: The graph, untouched.
        constants: `{node name: value}`; a value fills the placeholder's shape
            (a scalar where its rank is unknown) in its dtype.
        label: The graph, for messages.

    Returns:
        The bound copy, and the same values as feeds (`{"name:0": array}`),
        so that the graph it was taken from can be run alike.

    Raises:
        FreezeError: A name is not a node of the graph or not a placeholder,
            or its value does not fit the placeholder's dtype or shape.
    """
    bound = tf.compat.v1.GraphDef()
    bound.CopyFrom(graph_def)
    nodes = {node.name: node for node in bound.node}
    feeds = {}
    for name, value in constants.items():
        node = nodes.get(name)
        if node is None:
            close = difflib.get_close_matches(name, list(nodes), n=3, cutoff=0.6)
            closest = f" Closest: {', '.join(map(repr, close))}." if close else ""
            raise FreezeError(
                f"freeze.constants: {name!r} is not a node of {label}.{closest} "
                "HINT: bind the placeholders the graph switches on, e.g. is_training."
            )
        if node.op not in PLACEHOLDER_OPS:
            raise FreezeError(
                f"freeze.constants: {name!r} of {label} is not a placeholder (its op is "
                f"{node.op}); only placeholders can be bound to a value."
            )
        array = _constant_array(node, value, label)
        _make_const(node, array)
        feeds[f"{name}:0"] = array
    return bound, feeds


def _constant_array(node: Any, value: bool | int | float, label: str) -> np.ndarray:
    dtype = tf.as_dtype(node.attr["dtype"].type)
    problem = None
    if dtype == tf.bool:
        fits = isinstance(value, bool)
    elif dtype.is_integer:
        fits = isinstance(value, int) and not isinstance(value, bool)
        if fits and not dtype.min <= value <= dtype.max:
            problem = f"{value!r} is out of the range of {dtype.name}"
    elif dtype.is_floating:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        problem = f"a {dtype.name} placeholder cannot be bound to {value!r}"
        fits = True
    if not fits:
        expected = {tf.bool: "true or false"}.get(dtype, f"a number that is a {dtype.name}")
        problem = f"{value!r} is not {expected}"
    shape = tf.TensorShape(node.attr["shape"].shape) if "shape" in node.attr else tf.TensorShape(None)
    if problem is None and shape.rank is not None and not shape.is_fully_defined():
        problem = f"its shape {shape} is not fully known, so a value cannot fill it"
    if problem is not None:
        raise FreezeError(
            f"freeze.constants: cannot bind {node.name!r} ({node.op} {dtype.name}) of {label}: "
            f"{problem}."
        )
    return np.full(shape.as_list() if shape.rank is not None else [], value, dtype.as_numpy_dtype)


def _make_const(node: Any, array: np.ndarray) -> None:
    """Turn `node` into a `Const` holding `array`, keeping its name (and so its consumers)."""
    dtype = node.attr["dtype"].type
    del node.input[:]  # a PlaceholderWithDefault's default, which nothing reads any more
    node.op = "Const"
    node.ClearField("attr")
    node.attr["dtype"].type = dtype
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(array))


def unbound_switch_error(name: str, label: str) -> FreezeError:
    """The error for a required bool placeholder that the outputs read but nothing feeds."""
    return FreezeError(
        f"Placeholder {name!r} (bool) of {label} feeds the outputs but is neither an input "
        f"nor bound. HINT: bind it with freeze.constants (e.g. {{{name}: false}}, "
        f"or --constant {name}=false), or list it in input_names to keep it an input."
    )


def check_placeholders_fed(
    graph_def: Any, needed: Collection[str], inputs: Collection[str], *, label: str
) -> None:
    """Raise unless every required placeholder the outputs read is an input.

    A frozen graph is run with its inputs only; a placeholder it also needs
    would fail there with TensorFlow's "You must feed a value" instead.
    """
    unfed = [
        node for node in graph_def.node
        if node.name in needed and node.op == "Placeholder" and node.name not in inputs
        and node.attr["dtype"].type != tf.resource.as_datatype_enum
    ]
    for node in unfed:
        if node.attr["dtype"].type == tf.bool.as_datatype_enum:
            raise unbound_switch_error(node.name, label)
    if unfed:
        raise FreezeError(
            f"Placeholder(s) {[n.name for n in unfed]} of {label} feed the outputs but are not "
            "in freeze.input_names. HINT: add them to input_names, or bind them with "
            "freeze.constants."
        )


def warn_default_switches(
    graph_def: Any, needed: Collection[str], inputs: Collection[str], *, label: str
) -> None:
    """Warn of bool placeholders with a default the outputs read: their other branch stays."""
    for node in graph_def.node:
        if (
            node.name in needed and node.op == "PlaceholderWithDefault"
            and node.name not in inputs and node.attr["dtype"].type == tf.bool.as_datatype_enum
        ):
            logger.warning(
                "%s (bool, with a default) of %s stays in the frozen graph, and with it the "
                "branch it switches to (e.g. training's batch moments and dropout). HINT: bind "
                "it with freeze.constants: {%s: false}.",
                node.name, label, node.name,
            )
