"""Freezing a Keras model into a self-contained TF1 GraphDef.

The steps are separate functions: `model_signature` names the inputs and
outputs, `trace` builds the inference function (`training=False`),
`freeze_graph_def` folds the variables into constants,
`optimize.optimize_graph_def` (with `freeze.optimize`) strips what inference
does not need, `verify_graph_def` runs the written file in a TF1 session
against the live model, and `freeze_model` ties them together and publishes
the file atomically with a JSON sidecar.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import re
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf
from google.protobuf import message, text_format
from tensorflow.python.framework import convert_to_constants

from tfcheckpointer import naming
from tfcheckpointer.config import FreezeConfig
from tfcheckpointer.errors import FreezeError, VerificationError
from tfcheckpointer.files import atomic_write
from tfcheckpointer.keys import stable_layer_names

if TYPE_CHECKING:
    from tfcheckpointer.optimize import OptimizeReport

logger = logging.getLogger("tfcheckpointer")

PROTOBUF_LIMIT_BYTES = 2**31 - 1
"""A serialized protocol buffer, hence a GraphDef, cannot reach 2 GiB."""

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


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: node name, dtype name and shape (None = any size)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @property
    def tensor(self) -> str:
        return f"{self.name}:0"


@dataclasses.dataclass(frozen=True)
class ModelSignature:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


@dataclasses.dataclass(frozen=True)
class FrozenGraph:
    """A published frozen graph."""

    path: str
    sidecar: str
    sha256: str
    bytes: int
    node_count: int
    max_abs_diff: float | None
    optimized: OptimizeReport | None = None
    """What `freeze.optimize` removed; None when it is off."""


def _check_count(kind: str, names: Sequence[str], expected: int) -> None:
    if len(names) != expected:
        raise FreezeError(
            f"freeze.{kind}_names has {len(names)} name(s) {list(names)}, but the model has "
            f"{expected} {kind}(s); give one name per {kind}."
        )


def _producer(tensor: Any) -> Any:
    """The layer that made a symbolic tensor (`operation` in Keras 3, `layer` in tf_keras)."""
    history = tensor._keras_history
    return getattr(history, "operation", None) or history.layer


def model_signature(
    model: keras.Model,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> ModelSignature:
    """The frozen graph's inputs and outputs, named as configured or after the model's layers.

    Default names are the stable layer names (see `keys`), so they do not
    depend on how many models the process built before.
    """
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        raise FreezeError(
            f"Model {model.name!r} has no symbolic inputs/outputs (a subclassed model?). "
            "HINT: build it with the functional API or keras.Sequential([keras.Input(...), ...])."
        ) from None
    layer_names = stable_layer_names(model)
    if input_names is None:
        input_names = [layer_names[id(_producer(t))] for t in inputs]
    if output_names is None:
        output_names = [layer_names[id(_producer(t))] for t in outputs]
    _check_count("input", input_names, len(inputs))
    _check_count("output", output_names, len(outputs))

    def info(name: str, tensor: Any) -> TensorInfo:
        return TensorInfo(name, tf.as_dtype(tensor.dtype).name, tuple(tensor.shape))

    return ModelSignature(
        tuple(map(info, input_names, inputs)), tuple(map(info, output_names, outputs))
    )


def _call_inference(model: keras.Model, flat_inputs: Sequence[Any]) -> list[Any]:
    structure = getattr(model, "_inputs_struct", None)
    if len(flat_inputs) == 1 and not isinstance(structure, (Mapping, list, tuple)):
        packed = flat_inputs[0]
    elif structure is not None:
        packed = keras.tree.pack_sequence_as(structure, list(flat_inputs))
    else:
        packed = list(flat_inputs)
    return keras.tree.flatten(model(packed, training=False))


def trace(model: keras.Model, signature: ModelSignature) -> tf.types.experimental.ConcreteFunction:
    """The inference function with named input placeholders and output identities."""
    specs = [
        tf.TensorSpec(i.shape, tf.as_dtype(i.dtype), name=i.name) for i in signature.inputs
    ]

    @tf.autograph.experimental.do_not_convert
    def inference(*flat_inputs):
        results = _call_inference(model, flat_inputs)
        return [tf.identity(t, name=o.name) for t, o in zip(results, signature.outputs)]

    return tf.function(inference).get_concrete_function(*specs)


def all_nodes(graph_def: tf.compat.v1.GraphDef) -> Iterable[Any]:
    yield from graph_def.node
    for function in graph_def.library.function:
        yield from function.node_def


def check_freezable(model: keras.Model, concrete: Any, *, size_limit: int) -> None:
    """Refuse models a GraphDef cannot hold, naming the ops or the size."""
    total = sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size for v in model.variables)
    if total >= size_limit:
        raise FreezeError(
            f"Model {model.name!r} has {total:,} bytes of variables; a frozen GraphDef must stay "
            f"under {size_limit:,} bytes (the 2 GiB protobuf limit). HINT: keep the Saver "
            "checkpoints (no size limit) and export a SavedModel for serving instead."
        )
    offending = sorted(
        {n.op for n in all_nodes(concrete.graph.as_graph_def()) if UNFREEZABLE_OPS.search(n.op)}
    )
    if offending:
        raise FreezeError(
            f"Model {model.name!r} cannot be frozen: it uses {', '.join(offending)}, state that "
            "a GraphDef cannot hold as constants (lookup tables, Python functions). "
            "HINT: apply lookup / preprocessing layers outside the model you freeze."
        )


def freeze_graph_def(
    model: keras.Model, signature: ModelSignature, *, size_limit: int = PROTOBUF_LIMIT_BYTES
) -> tf.compat.v1.GraphDef:
    """A GraphDef of `model`'s inference function with every variable a constant."""
    concrete = trace(model, signature)
    check_freezable(model, concrete, size_limit=size_limit)
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    graph_def = frozen.graph.as_graph_def()
    clear_devices(graph_def)
    check_no_variables(graph_def)
    names = {n.name for n in graph_def.node}
    absent = [t.name for t in signature.inputs + signature.outputs if t.name not in names]
    if absent:
        raise FreezeError(
            f"Node name(s) {absent} did not survive tracing (they clash with names inside the "
            "model). HINT: choose other freeze.input_names / freeze.output_names."
        )
    check_graph_size(graph_def, size_limit)
    return graph_def


def clear_devices(graph_def: tf.compat.v1.GraphDef) -> None:
    """Remove device strings, so the graph runs wherever it is loaded."""
    for node in all_nodes(graph_def):
        node.device = ""


def check_no_variables(graph_def: tf.compat.v1.GraphDef) -> None:
    """Raise if a variable op or a resource placeholder is left in the graph."""
    leftovers = sorted(
        {
            f"{n.name} ({n.op})"
            for n in graph_def.node
            if n.op in VARIABLE_OPS
            or (n.op == "Placeholder" and n.attr["dtype"].type == tf.resource.as_datatype_enum)
        }
    )
    if leftovers:
        raise FreezeError("Variables are left in the frozen graph: " + ", ".join(leftovers))


def check_graph_size(graph_def: tf.compat.v1.GraphDef, size_limit: int) -> None:
    if graph_def.ByteSize() >= size_limit:
        raise FreezeError(
            f"The frozen graph would be {graph_def.ByteSize():,} bytes; it must stay under "
            f"{size_limit:,} bytes (the 2 GiB protobuf limit)."
        )


def _optimize(
    graph_def: tf.compat.v1.GraphDef, signature: ModelSignature, *, size_limit: int
) -> tuple[tf.compat.v1.GraphDef, OptimizeReport]:
    """`optimize.optimize_graph_def`, logged and size-checked again (folding can grow constants)."""
    # Imported here: Grappler is loaded only by the jobs that ask for it.
    from tfcheckpointer.optimize import optimize_graph_def

    graph_def, report = optimize_graph_def(graph_def, signature)
    check_graph_size(graph_def, size_limit)
    logger.info(
        "Optimized frozen graph nodes=%d->%d bytes=%d->%d",
        report.nodes_before, report.nodes_after, report.bytes_before, report.bytes_after,
    )
    return graph_def, report


def serialize(graph_def: tf.compat.v1.GraphDef, *, as_text: bool) -> bytes:
    if as_text:
        return text_format.MessageToString(graph_def).encode()
    return graph_def.SerializeToString()


def load_graph_def(path: str, *, as_text: bool | None = None) -> tf.compat.v1.GraphDef:
    """Read a GraphDef: text when `as_text`, by default when `path` ends in `.pbtxt`."""
    if as_text is None:
        as_text = path.endswith(".pbtxt")
    graph_def = tf.compat.v1.GraphDef()
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        if as_text:
            text_format.Parse(data.decode(), graph_def)
        else:
            graph_def.ParseFromString(data)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError) as error:
        raise FreezeError(f"{path} is not a GraphDef: {error}") from None
    return graph_def


def probe_inputs(signature: ModelSignature, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """A deterministic batch for every input: normal floats, small non-negative ints."""
    rng = np.random.default_rng(seed)
    batch = []
    for spec in signature.inputs:
        shape = [batch_size] + [d if d is not None else 4 for d in spec.shape[1:]]
        dtype = np.dtype(tf.as_dtype(spec.dtype).as_numpy_dtype)
        if np.issubdtype(dtype, np.floating):
            batch.append(rng.standard_normal(shape).astype(dtype))
        elif dtype == np.bool_:
            batch.append(rng.integers(0, 2, shape).astype(bool))
        else:
            batch.append(rng.integers(0, 2, shape).astype(dtype))
    return batch


def run_graph_def(
    graph_def: tf.compat.v1.GraphDef, signature: ModelSignature, inputs: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Run a frozen graph in a fresh TF1 session, as a TF1 consumer would."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(
            [o.tensor for o in signature.outputs],
            {i.tensor: x for i, x in zip(signature.inputs, inputs)},
        )


def verify_graph_def(
    graph_def: tf.compat.v1.GraphDef,
    model: keras.Model,
    signature: ModelSignature,
    inputs: Sequence[np.ndarray],
    tolerance: float,
) -> float:
    """The largest absolute difference from the live model; raise above `tolerance`."""
    expected = _live_outputs(model, inputs)
    return compare_outputs(signature, expected, run_graph_def(graph_def, signature, inputs), tolerance)


def _live_outputs(model: keras.Model, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The model's inference outputs (`training=False`) on `inputs`, flattened."""
    return [np.asarray(t) for t in _call_inference(model, [tf.constant(x) for x in inputs])]


def freeze_model(
    model: keras.Model,
    config: FreezeConfig,
    *,
    step: int | None = None,
    checkpoint: str | None = None,
    probe: Sequence[np.ndarray] | None = None,
    size_limit: int = PROTOBUF_LIMIT_BYTES,
) -> FrozenGraph:
    """Freeze `model`, verify the written file, then publish it and its sidecar.

    Args:
        model: A built functional or Sequential Keras model.
        config: The `freeze:` section.
        step: The global step the weights are at, for the sidecar.
        checkpoint: The checkpoint prefix holding the same weights, for the sidecar.
        probe: Input arrays for verification, one per input; a deterministic
            random batch of `config.verify_batch_size` rows by default.
        size_limit: Largest GraphDef accepted, in bytes.

    Nothing is left at `config.output` unless verification passed. With
    `config.optimize`, the optimized graph is the one verified and published.
    """
    signature = model_signature(model, config.input_names, config.output_names)
    graph_def = freeze_graph_def(model, signature, size_limit=size_limit)
    return publish_frozen_graph(
        graph_def, config, signature, reference=lambda inputs: _live_outputs(model, inputs),
        probe=probe, size_limit=size_limit,
        description={"step": step, "checkpoint": checkpoint},
    )


def publish_frozen_graph(
    graph_def: tf.compat.v1.GraphDef,
    config: FreezeConfig,
    signature: ModelSignature,
    *,
    reference: Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]],
    probe: Sequence[np.ndarray] | None = None,
    size_limit: int = PROTOBUF_LIMIT_BYTES,
    description: Mapping[str, Any] | None = None,
) -> FrozenGraph:
    """Publish `graph_def` at `config.output` as `freeze_model` does, verified and with a sidecar.

    With `config.optimize` it is optimized first (`optimize.optimize_graph_def`).
    The file is written to a temporary name, loaded back and run in a fresh
    TF1 session on the probe batch; its outputs must be within
    `config.verify_tolerance` of `reference(probe)`. Only then is it renamed
    into place and `<output>.json` written. `description` adds or sets
    sidecar keys (`step`, `checkpoint`, ...).
    """
    report = None
    if config.optimize:
        graph_def, report = _optimize(graph_def, signature, size_limit=size_limit)
    output = config.output
    as_text = output.endswith(".pbtxt")
    data = serialize(graph_def, as_text=as_text)
    temp = output + naming.TEMP_INFIX
    try:
        try:
            tf.io.gfile.makedirs(os.path.dirname(output) or ".")
            with tf.io.gfile.GFile(temp, "wb") as f:
                f.write(data)
        except (OSError, tf.errors.OpError) as error:
            raise FreezeError(f"Cannot write {output}: {error}") from None
        max_diff = None
        if config.verify:
            probe = probe if probe is not None else default_probe(signature, config.verify_batch_size)
            max_diff = compare_outputs(
                signature,
                reference(probe),
                run_graph_def(load_graph_def(temp, as_text=as_text), signature, probe),
                config.verify_tolerance,
            )
        tf.io.gfile.rename(temp, output, overwrite=True)
    finally:
        if tf.io.gfile.exists(temp):
            tf.io.gfile.remove(temp)
    sha256 = hashlib.sha256(data).hexdigest()
    sidecar = output + naming.SIDECAR_SUFFIX
    content = {
        "format": "frozen GraphDef (text)" if as_text else "frozen GraphDef",
        "inputs": [_describe(t) for t in signature.inputs],
        "outputs": [_describe(t) for t in signature.outputs],
        "step": None,
        "checkpoint": None,
        "sha256": sha256,
        "bytes": len(data),
        "node_count": len(graph_def.node),
        "optimized": report.as_dict() if report else None,
        "verified": config.verify,
        "max_abs_diff": max_diff,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        **(description or {}),
    }
    atomic_write(sidecar, (json.dumps(content, indent=2) + "\n").encode())
    return FrozenGraph(output, sidecar, sha256, len(data), len(graph_def.node), max_diff, report)


def default_probe(signature: ModelSignature, batch_size: int) -> list[np.ndarray]:
    """`freeze.probe_inputs`, with the batch a graph fixes when it fixes one."""
    for spec in signature.inputs:
        if spec.shape is None:
            raise FreezeError(
                f"Input {spec.name!r} has an unknown shape, so no probe batch can be made. "
                "HINT: pass verification inputs (probe=...)."
            )
    fixed = {s.shape[0] for s in signature.inputs if s.shape and s.shape[0] is not None}
    batch_size = fixed.pop() if len(fixed) == 1 else batch_size
    batch = probe_inputs(signature, batch_size)
    # probe_inputs gives every input a batch dimension; a scalar input gets a scalar.
    return [x if spec.shape else x.reshape(-1)[0] for spec, x in zip(signature.inputs, batch)]


def compare_outputs(
    signature: ModelSignature,
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    tolerance: float,
) -> float:
    worst = 0.0
    for spec, want, got in zip(signature.outputs, expected, actual):
        want, got = np.asarray(want, np.float64), np.asarray(got, np.float64)
        diff = float(np.max(np.abs(want - got), initial=0.0))
        if not diff <= tolerance:  # also catches NaN
            raise VerificationError(spec.name, diff, tolerance)
        worst = max(worst, diff)
    return worst


def _describe(info: TensorInfo) -> dict[str, Any]:
    shape = None if info.shape is None else list(info.shape)
    return {"name": info.name, "tensor": info.tensor, "dtype": info.dtype, "shape": shape}
