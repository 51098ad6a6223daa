"""A TF1 MetaGraphDef (`.meta`) and value-less GraphDef for an eagerly trained Keras model.

Keras 3 trains eagerly, so no graph exists for `Saver` to export. One is
built here: in a fresh `tf.Graph`, one resource variable per checkpoint key,
named exactly the key; the traced inference function (`keras_freeze.trace`,
`training=False`) imported into it, each variable handle it captured rewired to
the new variable with the same Keras variable behind it (matched by the
identity of the captured handle); and a `Saver` over every key. A TF1
consumer then does what it always did::

    saver = tf.compat.v1.train.import_meta_graph("model.ckpt-100.meta")
    saver.restore(session, "model.ckpt-100")
    session.run("output/predict:0", {"inputs/X:0": x})

The graph holds no values (the variables start at zeros; the checkpoint
supplies the values), and it does not change while training, so build it
once per run with `build_meta_graph` and write the same bytes (`files.serialize_meta_graph_def`)
next to every checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.tf_utils import tf_variable
from tfcheckpointer.checkpoint.variables import make_saver
from tfcheckpointer.errors import FreezeError, first_line
from tfcheckpointer.graph.keras_freeze import trace
from tfcheckpointer.graph.nodes import unfreezable_ops
from tfcheckpointer.graph.reference_graph import reference_graph_def
from tfcheckpointer.graph.signature import (
    INPUTS_COLLECTION,
    OUTPUTS_COLLECTION,
    PREDICT_METHOD_NAME,
    SERVING_SIGNATURE_KEY,
    ModelSignature,
)




def build_meta_graph(
    model: keras.Model, signature: ModelSignature, variables: Mapping[str, Any]
) -> tf.compat.v1.MetaGraphDef:
    """A MetaGraphDef of `model`'s inference pass whose Saver restores our checkpoints.

    Example:

    ```python
    variables = keys.checkpoint_variables(model, include_optimizer=True)
    signature = model_signature(model, ["inputs/X"], ["output/predict"])
    meta = build_meta_graph(model, signature, variables)
    data = serialize_meta_graph_def(meta)  # once per run; the manager writes it beside each checkpoint
    ```

    Args:
        model: A built functional or Sequential Keras model.
        signature: Its input and output names (`keras_freeze.model_signature`). The
            input placeholders and the output identities carry exactly these
            names; they are also in the `inputs` / `outputs` collections and
            in the `serving_default` signature.
        variables: `{checkpoint key: Keras or TF variable}`, the map the
            checkpoints are written with. Each key becomes a variable named
            exactly the key, initialised to zeros, in the Saver's `var_list`;
            the Saver restores exactly these keys, so build the MetaGraphDef
            from the same map (with or without optimizer state) as the
            checkpoints it goes with.

    Raises:
        FreezeError: The model uses state a graph file cannot carry (lookup
            tables, Python functions), captures a variable missing from
            `variables`, or a name would not survive exactly.
    """
    concrete = trace(model, signature)
    _check_exportable(model, concrete)
    _check_names_survived(concrete, signature)
    try:
        meta, rewire = _export(model, signature, variables, concrete)
    except (ValueError, TypeError, tf.errors.OpError) as error:
        # TensorFlow's import and shape inference of a traced graph it cannot take again
        # (e.g. `tf.gather_nd` on a variable loses the handle's shape): one line, not a trace.
        raise FreezeError(
            f"Cannot build a .meta for model {model.name!r}: {first_line(error)}"
        ) from None
    _rewire(meta.graph_def, rewire)
    _drop_loop_shape_hints(meta.graph_def)
    meta.signature_def[SERVING_SIGNATURE_KEY].CopyFrom(_serving_signature(signature))
    return meta


def _export(
    model: keras.Model,
    signature: ModelSignature,
    variables: Mapping[str, Any],
    concrete: Any,
) -> tuple[tf.compat.v1.MetaGraphDef, dict[str, str]]:
    """The MetaGraphDef before rewiring, and `{captured placeholder: variable or constant}`."""
    key_of_handle = {id(tf_variable(v).handle): key for key, v in variables.items()}
    graph = tf.Graph()
    with graph.as_default():
        # Imported first, into an empty graph, so every name stays as traced: importing
        # next to a variable `dense_1/kernel` would rename an output `dense_1` (a prefix).
        tf.compat.v1.import_graph_def(concrete.graph.as_graph_def(), name="")
        graph_variables = {key: _graph_variable(key, v) for key, v in variables.items()}
        rewire = {}
        for external, internal in concrete.graph.captures:
            if external.dtype != tf.resource:
                # A large eager constant the model closes over: a constant here too.
                rewire[internal.op.name] = tf.constant(external.numpy()).op.name
            elif id(external) in key_of_handle:
                rewire[internal.op.name] = key_of_handle[id(external)]
            else:
                raise FreezeError(
                    f"Model {model.name!r} reads a variable or resource that is not among the "
                    f"checkpoint variables (captured as {internal.op.name!r}); the .meta could not "
                    "restore it. HINT: pass every variable the model uses in `variables`."
                )
        for spec in signature.inputs:
            graph.add_to_collection(INPUTS_COLLECTION, graph.get_tensor_by_name(spec.tensor))
        for spec in signature.outputs:
            graph.add_to_collection(OUTPUTS_COLLECTION, graph.get_tensor_by_name(spec.tensor))
        step = graph_variables.get(naming.GLOBAL_STEP_KEY)
        if step is not None and step.dtype.is_integer:
            graph.add_to_collection(tf.compat.v1.GraphKeys.GLOBAL_STEP, step)
        saver = make_saver(graph_variables)
        meta = tf.compat.v1.train.export_meta_graph(
            graph=graph, saver_def=saver.as_saver_def(), clear_devices=True
        )
    return meta, rewire


def graph_def_of(meta: tf.compat.v1.MetaGraphDef) -> tf.compat.v1.GraphDef:
    """The value-less GraphDef of `meta` in the form TF1 tools expect (`graph.pbtxt`).

    Reference variables (`VariableV2`) named by checkpoint key, read through
    `Identity`, so that tools given no `SaverDef` restore by name
    (`reference_graph.reference_graph_def`). The `.meta` itself keeps resource
    variables: its Saver restores them, by name or not.
    """
    return reference_graph_def(meta)


def _check_exportable(model: keras.Model, concrete: Any) -> None:
    offending = unfreezable_ops(concrete.graph.as_graph_def())
    if offending:
        raise FreezeError(
            f"Model {model.name!r} cannot be exported as a MetaGraphDef: it uses "
            f"{', '.join(offending)}, which a graph file cannot carry (a lookup table's contents "
            "are not in the checkpoint, a Python function is not in the graph). "
            "HINT: apply lookup / preprocessing layers outside the model you export."
        )


def _check_names_survived(concrete: Any, signature: ModelSignature) -> None:
    """The traced placeholders and output identities carry exactly the configured names."""
    graph = concrete.graph
    renamed = [
        f"{spec.name} (traced as {tensor.op.name})"
        for spec, tensor in zip(signature.inputs, graph.inputs)
        if tensor.op.name != spec.name
    ]
    for spec, tensor in zip(signature.outputs, graph.outputs):
        # tf.function may add its own identity after ours.
        chain = [tensor.op]
        while chain[-1].type == "Identity" and chain[-1].name != spec.name:
            chain.append(chain[-1].inputs[0].op)
        if chain[-1].name != spec.name:
            ours = [op for op in chain if op.type == "Identity"][-1]
            renamed.append(f"{spec.name} (traced as {ours.name})")
    if renamed:
        raise FreezeError(
            f"Node name(s) {', '.join(renamed)} clash with names inside the model. "
            "HINT: choose other freeze.input_names / freeze.output_names."
        )


def _graph_variable(key: str, variable: Any) -> tf.Variable:
    """A zero-initialised resource variable whose op is named exactly `key`."""
    source = tf_variable(variable)
    try:
        created = tf.Variable(
            lambda: tf.zeros(source.shape, source.dtype),
            dtype=source.dtype,
            name=key,
            trainable=bool(getattr(variable, "trainable", source.trainable)),
            shape=source.shape,
        )
    except ValueError as error:
        raise FreezeError(f"Checkpoint key {key!r} cannot name a graph variable: {error}") from None
    if created.op.name != key:
        raise FreezeError(
            f"Checkpoint key {key!r} is also the name of a node in the traced model, so its "
            f"variable became {created.op.name!r}. HINT: choose other freeze.input_names / "
            "freeze.output_names, or rename the layer the key comes from."
        )
    return created


def _drop_loop_shape_hints(graph_def: tf.compat.v1.GraphDef) -> None:
    """Drop the `_output_shapes` hints of while loops, which go stale when frozen.

    A loop passes its resource inputs (the variables) through as outputs, hinted
    as scalars. TensorFlow's `freeze_graph` tool turns those inputs into weight
    constants but keeps the hints, so its output then fails to import (seen with
    an LSTM: "_output_shapes attribute inconsistent with the GraphDef"). The
    loop's own `output_shapes` attribute, which shape inference uses, stays.
    """
    for node in graph_def.node:
        if node.op in ("While", "StatelessWhile"):
            node.attr.pop("_output_shapes", None)


def _rewire(graph_def: tf.compat.v1.GraphDef, targets: Mapping[str, str]) -> None:
    """Make the readers of each `{placeholder: node}` read `node`; drop the placeholders.

    This is `import_graph_def`'s `input_map`, done on the exported proto because
    the variables can only be created after the import (see `build_meta_graph`).
    Placeholders and targets have one output each, so references carry no `:index`;
    only top-level nodes read captures (library functions get them as arguments).
    """
    for node in graph_def.node:
        for i, source in enumerate(node.input):
            control = source.startswith("^")
            name = source.lstrip("^").split(":")[0]
            if name in targets:
                node.input[i] = ("^" if control else "") + targets[name]
    kept = [n for n in graph_def.node if n.name not in targets]
    del graph_def.node[:]
    graph_def.node.extend(kept)


def _serving_signature(signature: ModelSignature) -> Any:
    """A SavedModel-style `predict` signature, keyed by the configured names.

    Shapes come from the Keras model: the imported graph no longer knows them.
    """
    return meta_graph_pb2.SignatureDef(
        inputs={spec.name: spec.as_proto() for spec in signature.inputs},
        outputs={spec.name: spec.as_proto() for spec in signature.outputs},
        method_name=PREDICT_METHOD_NAME,
    )
