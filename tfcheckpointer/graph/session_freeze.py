"""Freezing a TF1 graph: a `.meta` and its checkpoint (`tfcheckpointer freeze --meta`), or a live session.

The `.meta` route imports the MetaGraphDef into a fresh graph, restores the
checkpoint with its Saver, folds the variables the outputs read into
constants (`convert_variables_to_constants`, which also drops the
save/restore subgraph) and clears device strings. Either way the written
file is checked against the session it was frozen from, and published as
`publish.publish_frozen_graph` publishes every frozen graph.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.bundle import checkpoint_shapes, is_optimizer_key, read_step
from tfcheckpointer.checkpoint.tf_utils import quiet_tensorflow
from tfcheckpointer.config.schema import FreezeConfig
from tfcheckpointer.errors import CheckpointError, FreezeError, RestoreMismatchError, first_line
from tfcheckpointer.graph.files import read_meta_graph_def
from tfcheckpointer.graph.graph_signature import (
    check_inputs_used,
    meta_signature,
    require_node,
    subgraph_nodes,
    tensor_info,
)
from tfcheckpointer.graph.locate import LATEST, resolve_checkpoint
from tfcheckpointer.graph.nodes import (
    PROTOBUF_LIMIT_BYTES,
    check_graph_size,
    check_no_variables,
    clear_devices,
    prune_unused_functions,
)
from tfcheckpointer.graph.probe import ProbeLike
from tfcheckpointer.graph.publish import FrozenCheckpoint, FrozenGraph, publish_frozen_graph
from tfcheckpointer.graph.signature import ModelSignature


def freeze_meta_graph(
    meta: str,
    config: FreezeConfig,
    *,
    checkpoint: str = LATEST,
    probe: ProbeLike = None,
    size_limit: int = PROTOBUF_LIMIT_BYTES,
) -> FrozenCheckpoint:
    """Freeze a checkpoint with the MetaGraphDef (`.meta`) that describes its graph.

    Example:

    ```python
    freeze_meta_graph("runs/ckpt/model.ckpt-100.meta", FreezeConfig(output="model.pb"))
    ```

    Args:
        meta: A `.meta` file, e.g. the one written beside each checkpoint.
        config: How to freeze. `input_names` / `output_names` are nodes of
            the graph; by default its `inputs` / `outputs` collections, else
            its `serving_default` signature. Placeholders the outputs need
            beyond the named inputs become inputs too.
        checkpoint: `latest` (the newest beside `meta`), a directory or a prefix.
        probe: Verification inputs, one array per input; by default a
            deterministic random batch of `config.verify_batch_size` rows.
        size_limit: Largest GraphDef accepted, in bytes.

    Raises:
        RestoreMismatchError: The checkpoint lacks variables the graph needs,
            or holds them in other shapes (a `.meta` of another model).
        FreezeError: `meta` is not a MetaGraphDef, a name is not in the
            graph, or the frozen graph differs from the restored one.
    """
    meta = os.fspath(meta)
    if not tf.io.gfile.exists(meta) and tf.io.gfile.exists(meta + naming.META_SUFFIX):
        raise FreezeError(f"No such file: {meta}. HINT: give {meta}{naming.META_SUFFIX}.")
    meta_graph, _ = read_meta_graph_def(meta)
    if not meta_graph.HasField("saver_def"):
        raise FreezeError(f"{meta} has no Saver, so no checkpoint can be restored into its graph.")
    prefix = resolve_checkpoint(
        checkpoint, directory=os.path.dirname(meta) or ".", basename=_basename_of(meta)
    )
    stored = checkpoint_shapes(prefix)
    step = read_step(prefix, stored)[0]

    graph = tf.Graph()
    with graph.as_default(), quiet_tensorflow():
        try:
            saver = tf.compat.v1.train.import_meta_graph(meta_graph, clear_devices=True)
        except (ValueError, TypeError, KeyError, tf.errors.OpError) as error:
            raise FreezeError(f"Cannot import {meta} into a graph: {first_line(error)}") from None
        graph_def = graph.as_graph_def()
        signature = meta_signature(graph, graph_def, meta_graph, meta, config)
        needed = subgraph_nodes(graph_def, [o.name for o in signature.outputs])
        check_inputs_used(signature, needed, meta)
        with tf.compat.v1.Session(graph=graph) as session:
            _restore(session, saver, meta_graph, prefix, stored, needed, meta)
            published = _freeze_live_session(
                session, graph_def, signature, config, label=meta, probe=probe,
                size_limit=size_limit,
                description={"step": step, "checkpoint": prefix, "meta_graph": meta},
            )
    return FrozenCheckpoint(published, prefix, step)


def freeze_session(
    session: tf.compat.v1.Session,
    config: FreezeConfig,
    *,
    description: Mapping[str, Any] | None = None,
    probe: ProbeLike = None,
    size_limit: int = PROTOBUF_LIMIT_BYTES,
) -> FrozenGraph:
    """Freeze the graph of a live TF1 session, e.g. at the end of `CheckpointSessionHook`.

    `config.input_names` and `config.output_names` must name nodes of the
    session's graph. The frozen graph is verified against the session itself.
    `description` sets sidecar keys (`step`, `checkpoint`), as in
    `publish_frozen_graph`.
    """
    graph = session.graph
    graph_def = graph.as_graph_def()
    names = {node.name for node in graph_def.node}
    label = "the session's graph"
    for name in config.output_names or ():
        require_node(name, names, "output", label, [])
    for name in config.input_names or ():
        require_node(name, names, "input", label, [])
    signature = ModelSignature(
        tuple(tensor_info(graph, name, {}) for name in config.input_names or ()),
        tuple(tensor_info(graph, name, {}) for name in config.output_names or ()),
    )
    with quiet_tensorflow():
        return _freeze_live_session(
            session, graph_def, signature, config, label=label, probe=probe,
            size_limit=size_limit, description=description or {},
        )


def _freeze_live_session(
    session: tf.compat.v1.Session,
    graph_def: Any,
    signature: ModelSignature,
    config: FreezeConfig,
    *,
    label: str,
    probe: ProbeLike,
    size_limit: int,
    description: Mapping[str, Any],
) -> FrozenGraph:
    """Fold the session's variable values into `graph_def`, verify against the session, publish."""
    try:
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            session, graph_def, [o.name for o in signature.outputs]
        )
    except (ValueError, tf.errors.OpError) as error:
        raise FreezeError(f"Cannot freeze {label}: {first_line(error)}") from None
    clear_devices(frozen)
    prune_unused_functions(frozen)
    check_no_variables(frozen)
    check_graph_size(frozen, size_limit)
    graph = session.graph
    feeds = [graph.get_tensor_by_name(i.tensor) for i in signature.inputs]
    fetches = [graph.get_tensor_by_name(o.tensor) for o in signature.outputs]

    def reference(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            return session.run(fetches, dict(zip(feeds, inputs)))
        except tf.errors.OpError as error:
            raise FreezeError(f"Cannot run {label}: {first_line(error)}") from None

    return publish_frozen_graph(
        frozen, config, signature, reference=reference, probe=probe, size_limit=size_limit,
        description=description,
    )


def _basename_of(meta: str) -> str | None:
    """`model.ckpt` for `.../model.ckpt-100.meta`; None for a name without a step."""
    name = os.path.basename(meta)
    match = re.fullmatch(r"(.+)-\d+" + re.escape(naming.META_SUFFIX), name)
    return match.group(1) if match else None



def _saver_keys(
    graph: tf.Graph, meta_graph: Any
) -> dict[str, tuple[str | None, list[int] | None]]:
    """`{checkpoint key: (variable node, shape)}` for what the `.meta`'s Saver restores.

    Read off the restore subgraph: `RestoreV2` names the keys, and each of its
    outputs flows (through identities) into an `Assign` / `AssignVariableOp`
    on the variable. Where that walk fails the node and shape are None.
    """
    scope = meta_graph.saver_def.restore_op_name.rsplit("/", 1)[0]
    restored: dict[str, tuple[str | None, list[int] | None]] = {}
    for op in graph.get_operations():
        if op.type != "RestoreV2" or not op.name.startswith(scope + "/"):
            continue
        keys = tf.get_static_value(op.inputs[1])
        slices = tf.get_static_value(op.inputs[2])
        if keys is None or slices is None:
            continue
        for key, part, output in zip(keys, slices, op.outputs):
            node, shape = _assigned_variable(output)
            # A slice of a partitioned variable has a shape of its own.
            restored[key.decode()] = (node, None if part else shape)
    return restored


def _assigned_variable(tensor: tf.Tensor) -> tuple[str | None, list[int] | None]:
    pending = [tensor]
    while pending:
        for consumer in pending.pop().consumers():
            if consumer.type == "Identity":
                pending.append(consumer.outputs[0])
            elif consumer.type in ("AssignVariableOp", "Assign"):
                variable = consumer.inputs[0].op
                try:
                    shape = tf.TensorShape(variable.get_attr("shape"))
                except ValueError:
                    shape = tf.TensorShape(None)
                return variable.name, (shape.as_list() if shape.is_fully_defined() else None)
    return None, None


def _restore(
    session: tf.compat.v1.Session,
    saver: tf.compat.v1.train.Saver,
    meta_graph: Any,
    prefix: str,
    stored: Mapping[str, list[int]],
    needed: set[str],
    meta: str,
) -> None:
    """Restore the checkpoint into the session, refusing one of another model.

    The `.meta`'s own Saver restores when the checkpoint holds all it asks
    for. Otherwise only the variables the outputs read are restored, provided
    the checkpoint holds them alike (a checkpoint without optimizer state, say).
    """
    restored = _saver_keys(session.graph, meta_graph)
    missing = {key for key in restored if key not in stored}
    mismatched = {
        key: (shape, stored[key])
        for key, (_, shape) in restored.items()
        if key in stored and shape is not None and list(shape) != list(stored[key])
    }
    # A key whose variable the walk did not find counts as needed.
    required = {key for key, (node, _) in restored.items() if node is None or node in needed}
    if required & (missing | set(mismatched)):
        unexpected = [
            key for key in stored
            if key not in restored and not is_optimizer_key(key)
        ]
        raise RestoreMismatchError(
            prefix,
            missing=required & missing,
            unexpected=unexpected,
            mismatched={k: v for k, v in mismatched.items() if k in required},
            hint=f"give the checkpoint that {meta} was written with (or a later one of the same run).",
        )
    try:
        if not missing and not mismatched:
            saver.restore(session, prefix)
            return
        variables = session.graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
        by_node = {v.op.name: v for v in variables}
        subset = {key: by_node.get(restored[key][0]) for key in required}
        absent = sorted(key for key, variable in subset.items() if variable is None)
        if absent:
            raise FreezeError(
                f"{prefix} lacks or reshapes {', '.join(sorted(missing | set(mismatched)))}, "
                f"which the Saver of {meta} restores; the outputs do not need them, but the "
                f"graph lists no variable for {', '.join(absent)}, so those cannot be restored "
                "alone."
            )
        tf.compat.v1.train.Saver(var_list=subset).restore(session, prefix)
    except (ValueError, tf.errors.OpError) as error:
        raise CheckpointError(f"Cannot restore checkpoint {prefix}: {first_line(error)}") from None
