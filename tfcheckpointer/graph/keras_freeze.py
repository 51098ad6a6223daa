"""Freezing a Keras model into a self-contained TF1 GraphDef.

The steps are separate functions: `model_signature` names the inputs and
outputs, `trace` builds the inference function (`training=False`),
`streamed_graph_def` folds the variables into constants (read one at a
time as the file is written, `stream`), and `freeze_model`
hands the result to `publish.publish_frozen_graph`, which optimizes it (with
`freeze.optimize`), runs the written file in a TF1 session against the live
model and publishes it atomically with a JSON sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfcheckpointer.checkpoint.derived import stale_derived_state
from tfcheckpointer.checkpoint.keys import stable_layer_names
from tfcheckpointer.config.schema import FreezeConfig
from tfcheckpointer.errors import FreezeError, first_line
from tfcheckpointer.graph.constants import function_skeleton
from tfcheckpointer.graph.nodes import (
    PROTOBUF_LIMIT_BYTES,
    assigning_ops,
    check_graph_size,
    check_no_variables,
    clear_devices,
    unfreezable_ops,
)
from tfcheckpointer.graph.probe import Probe, ProbeLike, resolve_probe
from tfcheckpointer.graph.progress import progress_bar
from tfcheckpointer.graph.publish import FrozenGraph, publish_frozen_graph
from tfcheckpointer.graph.signature import ModelSignature, TensorInfo
from tfcheckpointer.graph.stream import StreamedGraph
from tfcheckpointer.graph.verify import HALF_PRECISION_EPSILON, compare_outputs, run_graph_def


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
    depend on how many models the process built before. The batch dimension
    is open (None) even where Keras fixed it: a model built from its first
    batch (a `Sequential` without an `Input`) records that batch's size, yet
    runs on any. Every other dimension is as Keras has it.
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

    def info(name: str, tensor: Any, *, output: bool = False) -> TensorInfo:
        shape = tuple(tensor.shape)
        dtype = tf.as_dtype(tensor.dtype)
        dtype = _published_dtype(dtype) if output else dtype
        return TensorInfo(name, dtype.name, shape and (None, *shape[1:]))

    return ModelSignature(
        tuple(info(name, t) for name, t in zip(input_names, inputs)),
        tuple(info(name, t, output=True) for name, t in zip(output_names, outputs)),
    )


_HALF_FLOATS = (tf.float16, tf.bfloat16)


def _published_dtype(dtype: tf.DType) -> tf.DType:
    """float32 for a mixed-precision model's float16 / bfloat16 outputs, else `dtype`.

    A consumer feeds and fetches what the model's users see, float32, whatever
    precision the layers compute in; the cast is part of the traced function.
    """
    return tf.float32 if dtype in _HALF_FLOATS else dtype


def call_inference(model: keras.Model, flat_inputs: Sequence[Any]) -> list[Any]:
    structure = getattr(model, "_inputs_struct", None)
    if len(flat_inputs) == 1 and not isinstance(structure, (Mapping, list, tuple)):
        packed = flat_inputs[0]
    elif structure is not None:
        packed = keras.tree.pack_sequence_as(structure, list(flat_inputs))
    else:
        packed = list(flat_inputs)
    return keras.tree.flatten(model(packed, training=False))


def trace(model: keras.Model, signature: ModelSignature) -> tf.types.experimental.ConcreteFunction:
    """The inference function with named input placeholders and output identities.

    float16 / bfloat16 outputs (a mixed-precision model's) are cast to float32,
    as `model_signature` records them.
    """
    specs = [
        tf.TensorSpec(i.shape, tf.as_dtype(i.dtype), name=i.name) for i in signature.inputs
    ]

    @tf.autograph.experimental.do_not_convert
    def inference(*flat_inputs):
        results = [
            tf.cast(t, _published_dtype(t.dtype)) for t in call_inference(model, flat_inputs)
        ]
        return [tf.identity(t, name=o.name) for t, o in zip(results, signature.outputs)]

    return tf.function(inference).get_concrete_function(*specs)


def check_freezable(model: keras.Model, concrete: Any, *, size_limit: int) -> None:
    """Refuse models a GraphDef cannot hold, naming the ops or the size."""
    total = sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size for v in model.variables)
    if total >= size_limit:
        raise FreezeError(
            f"Model {model.name!r} has {total:,} bytes of variables; a frozen GraphDef must stay "
            f"under {size_limit:,} bytes (the 2 GiB protobuf limit). HINT: keep the Saver "
            "checkpoints (no size limit) and export a SavedModel for serving instead."
        )
    graph_def = concrete.graph.as_graph_def()
    offending = unfreezable_ops(graph_def)
    if offending:
        raise FreezeError(
            f"Model {model.name!r} cannot be frozen: it uses {', '.join(offending)}, state that "
            "a GraphDef cannot hold as constants (lookup tables, Python functions). "
            "HINT: apply lookup / preprocessing layers outside the model you freeze."
        )
    writes = assigning_ops(graph_def)
    if writes:
        raise FreezeError(
            f"Model {model.name!r} cannot be frozen: its inference pass writes variables "
            f"({', '.join(writes)}), e.g. a stateful RNN keeping its state between batches, "
            "and a frozen graph holds constants only. HINT: freeze a copy built with "
            "stateful=False and the same weights."
        )


def _check_names_survived(signature: ModelSignature, names: set[str]) -> None:
    absent = [t.name for t in signature.inputs + signature.outputs if t.name not in names]
    if absent:
        raise FreezeError(
            f"Node name(s) {absent} did not survive tracing (they clash with names inside the "
            "model). HINT: choose other freeze.input_names / freeze.output_names."
        )


def check_model_freezable(
    model: keras.Model, config: FreezeConfig, *, size_limit: int = PROTOBUF_LIMIT_BYTES
) -> None:
    """Raise now what `freeze_model(model, config)` would refuse after training.

    The inputs and outputs and their names, ops a GraphDef cannot hold, and
    the 2 GiB limit are all known before the first step; the callback checks
    them at train begin, at the cost of one trace.
    """
    signature = model_signature(model, config.input_names, config.output_names)
    concrete = trace(model, signature)
    check_freezable(model, concrete, size_limit=size_limit)
    _check_names_survived(signature, {op.name for op in concrete.graph.get_operations()})


def streamed_graph_def(
    model: keras.Model, signature: ModelSignature, *, size_limit: int = PROTOBUF_LIMIT_BYTES
) -> StreamedGraph:
    """`model`'s inference function with every variable a constant, its values still unread.

    The graph is `convert_variables_to_constants_v2`'s (`constants.function_skeleton`);
    each variable is read when the file reaches its constant (`stream`).
    """
    concrete = trace(model, signature)
    check_freezable(model, concrete, size_limit=size_limit)
    try:
        streamed = function_skeleton(concrete)
    except (ValueError, TypeError, tf.errors.OpError) as error:
        raise FreezeError(
            f"Cannot fold the variables of model {model.name!r} into constants: "
            f"{first_line(error)}"
        ) from None
    clear_devices(streamed.skeleton)
    check_no_variables(streamed.skeleton)
    _check_names_survived(signature, {n.name for n in streamed.skeleton.node})
    return streamed


def freeze_graph_def(
    model: keras.Model, signature: ModelSignature, *, size_limit: int = PROTOBUF_LIMIT_BYTES
) -> tf.compat.v1.GraphDef:
    """A GraphDef of `model`'s inference function with every variable a constant, in memory."""
    graph_def = streamed_graph_def(model, signature, size_limit=size_limit).materialize()
    check_graph_size(graph_def, size_limit)
    return graph_def


def check_derived_state(model: keras.Model) -> None:
    """Refuse a model whose layers compute with derived state their variables no longer give.

    Verification compares the frozen graph with the live model, so it cannot
    see a live model that is itself wrong: a Normalization whose variables
    were assigned (a restore by hand, `set_weights`) but whose `mean` was not
    recomputed. Keras's own loading would recompute it, so the graph would
    not compute what the checkpoint's model computes.
    """
    stale = stale_derived_state(model)
    if stale:
        raise FreezeError(
            f"Model {model.name!r} computes with derived state that its variables no longer give: "
            f"{'; '.join(stale)}. A frozen graph of it would not compute what the model computes "
            "once Keras loads its weights. HINT: the variables were assigned without the layers' "
            "load hooks; restore with tfcheckpointer or Keras's load_weights, or call the "
            "layer's finalize_state()."
        )


def verify_graph_def(
    graph_def: tf.compat.v1.GraphDef,
    model: keras.Model,
    signature: ModelSignature,
    inputs: Sequence[np.ndarray],
    tolerance: float,
) -> float:
    """The largest absolute difference from the live model; raise above `tolerance`."""
    expected = live_outputs(model, inputs)
    return compare_outputs(signature, expected, run_graph_def(graph_def, signature, inputs), tolerance)


def live_outputs(model: keras.Model, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The model's inference outputs (`training=False`) on `inputs`, flattened."""
    return [np.asarray(t) for t in call_inference(model, [tf.constant(x) for x in inputs])]


def model_probe(model: keras.Model, config: FreezeConfig, probe: ProbeLike = None) -> Probe:
    """The verification batch for freezing `model` per `config`, checked against its inputs.

    `probe` as `probe.resolve_probe` takes it (None: the random default of
    `config.verify_batch_size` rows); a mapping may be keyed by the frozen
    graph's input names or by the model's input layer names. Resolve once, e.g.
    at train begin, to find a bad probe early, and pass the result to
    `freeze_model`.
    """
    signature = model_signature(model, config.input_names, config.output_names)
    return resolve_probe(
        probe, signature, batch_size=config.verify_batch_size, input_keys=input_keys(model)
    )


def input_keys(model: keras.Model) -> list[tuple[str]]:
    """For each model input, the key a dict of inputs may also hold it under: its layer's name."""
    return [(_producer(t).name,) for t in model.inputs]


def compute_dtype(model: keras.Model) -> str:
    """The dtype the model computes in: its least precise layer's half type, else its own.

    `float16` under the `mixed_float16` policy and `bfloat16` under
    `mixed_bfloat16`, even when the output layer computes in float32.
    """
    names = {
        tf.as_dtype(layer.compute_dtype).name
        for layer in [model, *model._flatten_layers()]
        if getattr(layer, "compute_dtype", None)
    }
    halves = [name for name in names if name in HALF_PRECISION_EPSILON]
    if halves:
        return max(halves, key=HALF_PRECISION_EPSILON.__getitem__)
    return tf.as_dtype(model.compute_dtype).name


def freeze_model(
    model: keras.Model,
    config: FreezeConfig,
    *,
    step: int | None = None,
    checkpoint: str | None = None,
    probe: ProbeLike = None,
    size_limit: int = PROTOBUF_LIMIT_BYTES,
    progress: bool = False,
) -> FrozenGraph:
    """Freeze `model`, verify the written file, then publish it and its sidecar.

    Args:
        model: A built functional or Sequential Keras model.
        config: The `freeze:` section.
        step: The global step the weights are at, for the sidecar.
        checkpoint: The checkpoint prefix holding the same weights, for the sidecar.
        probe: Verification inputs: one array per input (a single array for
            one input), a dict keyed by input name, a `tf.data.Dataset`, a
            zero-argument callable returning one of these, or a `Probe`
            (`model_probe`); a deterministic random batch of
            `config.verify_batch_size` rows by default.
        size_limit: Largest GraphDef accepted, in bytes.
        progress: Show a progress bar of the bytes written.

    The file is written node by node, one variable read at a time
    (`stream`), so the extra memory is about one variable's bytes, plus the
    weights about twice more (1.8x measured) while the written file is verified. With `config.verify`, a model whose layers compute with stale derived
    state (see `check_derived_state`) is refused before anything is traced.
    Nothing is left at `config.output` unless verification passed, within
    `config.verify_tolerance` or, if that is None, the default for the model's
    `compute_dtype`. With `config.optimize`, the optimized graph is the one
    verified and published. `config.constants` is refused: a Keras model is
    traced with `training=False` and has no placeholders to bind.
    """
    if config.constants:
        raise FreezeError(
            f"freeze.constants ({', '.join(config.constants)}) binds placeholders of a TF1 graph; "
            f"Keras model {model.name!r} is frozen with training=False and has none. HINT: drop "
            "freeze.constants, or freeze the TF1 graph (CheckpointSessionHook, freeze --meta)."
        )
    signature = model_signature(model, config.input_names, config.output_names)
    if config.verify:  # checked before the (costly) conversion
        check_derived_state(model)
        probe = model_probe(model, config, probe)
    streamed = streamed_graph_def(model, signature, size_limit=size_limit)
    return publish_frozen_graph(
        streamed, config, signature, reference=lambda inputs: live_outputs(model, inputs),
        probe=probe, size_limit=size_limit, progress=progress_bar if progress else None,
        description={"step": step, "checkpoint": checkpoint}, compute_dtype=compute_dtype(model),
    )
