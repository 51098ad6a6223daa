"""Freezing a TF1 graph: a `.meta` and its checkpoint (`tfcheckpointer freeze --meta`), or a live session.

The `.meta` route imports the MetaGraphDef into a fresh graph, restores the
checkpoint with its Saver, folds the variables the outputs read into
constants (as `convert_variables_to_constants` does, which also drops the
save/restore subgraph, but each variable read from the session only when the
file is written: `constants.session_skeleton`) and clears device strings. Either way the written
file is checked against the session it was frozen from, and published as
`publish.publish_frozen_graph` publishes every frozen graph.

With `freeze.constants` the named placeholders (`is_training`) are bound to
constants first (`bind.bind_placeholders`) and the branches their switches
no longer take are pruned (`optimize.prune_control_flow`), so the frozen
graph holds the inference branch only; the session it is checked against is
fed the same values. A graph with control flow v2 conditionals (`If` ops)
is lowered into `Switch`/`Merge` the same way, bound or not:
`convert_variables_to_constants` cannot freeze the variables an `If`'s branch
functions read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.bundle import checkpoint_shapes, is_optimizer_key, read_step
from tfcheckpointer.checkpoint.tf_utils import quiet_tensorflow
from tfcheckpointer.config.schema import FreezeConfig
from tfcheckpointer.errors import (
    CheckpointError,
    FreezeError,
    RestoreMismatchError,
    VerificationError,
    first_line,
    tensorflow_error_line,
)
from tfcheckpointer.graph.constants import session_skeleton
from tfcheckpointer.graph.bind import (
    bind_placeholders,
    check_placeholders_fed,
    warn_default_switches,
)
from tfcheckpointer.graph.files import read_graph_def, read_meta_graph_def
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
    check_no_variables,
    clear_devices,
    prune_unused_functions,
)
from tfcheckpointer.graph.probe import ProbeLike
from tfcheckpointer.graph.publish import FrozenCheckpoint, FrozenGraph, publish_frozen_graph
from tfcheckpointer.graph.signature import ModelSignature
from tfcheckpointer.graph.stream import ProgressFactory


def freeze_meta_graph(
    meta: str,
    config: FreezeConfig,
    *,
    checkpoint: str = LATEST,
    probe: ProbeLike = None,
    size_limit: int = PROTOBUF_LIMIT_BYTES,
    progress: ProgressFactory | None = None,
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
            beyond the named inputs become inputs too, except bool ones
            (training switches): bind those with `constants`.
        checkpoint: `latest` (the newest beside `meta`), a directory or a prefix.
        probe: Verification inputs, one array per input; by default a
            deterministic random batch of `config.verify_batch_size` rows.
        size_limit: Largest GraphDef accepted, in bytes.
        progress: Reports the bytes written (`progress.progress_bar` draws a bar).

    Raises:
        RestoreMismatchError: The checkpoint lacks variables the graph needs,
            or holds them in other shapes (a `.meta` of another model).
        FreezeError: `meta` is not a MetaGraphDef, a name is not in the
            graph, a constant does not fit its placeholder, a bool placeholder
            is neither an input nor bound, or the frozen graph differs from the
            restored one.
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
        graph_def, bound, signature, needed = _inference_graph(graph, meta_graph, meta, config)
        with tf.compat.v1.Session(graph=graph) as session:
            _restore(session, saver, meta_graph, prefix, stored, needed, meta)
            published = _freeze_live_session(
                session, graph_def, signature, config, bound=bound, label=meta, probe=probe,
                size_limit=size_limit, progress=progress,
                description={"step": step, "checkpoint": prefix, "meta_graph": meta},
            )
    return FrozenCheckpoint(published, prefix, step)


def freeze_graph_file(
    path: str,
    config: FreezeConfig,
    *,
    checkpoint: str = LATEST,
    probe: ProbeLike = None,
    size_limit: int = PROTOBUF_LIMIT_BYTES,
    progress: ProgressFactory | None = None,
) -> FrozenCheckpoint:
    """Freeze a checkpoint with a bare GraphDef, as TF's `freeze_graph --input_graph` does.

    Example:

    ```python
    freeze_graph_file("runs/ckpt/graph.pbtxt", FreezeConfig(output="model.pb",
                      output_names=("output/predict",)), checkpoint="runs/ckpt/model.ckpt-100")
    ```

    The GraphDef has no Saver, so each variable the outputs read is restored
    from the checkpoint key of its name (reference or resource variables).

    Args:
        path: A GraphDef (`.pbtxt` text, else binary), e.g. the `graph.pbtxt`
            written beside the checkpoints.
        config: How to freeze; `output_names` is required (a GraphDef declares
            none). `constants` binds placeholders (`is_training`) as for `--meta`.
        checkpoint: `latest` (the newest beside `path`), a directory or a prefix.
        probe: Verification inputs; by default a deterministic random batch.
        size_limit: Largest GraphDef accepted, in bytes.
        progress: Reports the bytes written (`progress.progress_bar` draws a bar).

    Raises:
        RestoreMismatchError: The checkpoint lacks a variable the outputs read,
            or holds it in another shape.
        FreezeError: `path` is not a GraphDef, a name is not in it, or the
            frozen graph differs from the restored one.
    """
    path = os.fspath(path)
    if path.endswith(naming.META_SUFFIX):
        raise FreezeError(
            f"{path} is a MetaGraphDef; --graph takes a GraphDef (graph.pbtxt). "
            f"HINT: freeze it with --meta {path}."
        )
    graph_def = read_graph_def(path)
    prefix = resolve_checkpoint(checkpoint, directory=os.path.dirname(path) or ".")
    stored = checkpoint_shapes(prefix)
    step = read_step(prefix, stored)[0]
    graph = tf.Graph()
    with graph.as_default(), quiet_tensorflow():
        try:
            tf.compat.v1.import_graph_def(graph_def, name="")
        except (ValueError, TypeError, KeyError, tf.errors.OpError) as error:
            raise FreezeError(f"Cannot import {path} into a graph: {first_line(error)}") from None
        # An empty MetaGraphDef declares nothing: the names come from `config`.
        imported, bound, signature, needed = _inference_graph(
            graph, tf.compat.v1.MetaGraphDef(), path, config
        )
        var_list = _variables_by_name(graph, needed, prefix, stored, path)
        with tf.compat.v1.Session(graph=graph) as session:
            try:
                tf.compat.v1.train.Saver(var_list=var_list).restore(session, prefix)
            except (ValueError, tf.errors.OpError) as error:
                raise CheckpointError(
                    f"Cannot restore checkpoint {prefix}: {first_line(error)}"
                ) from None
            published = _freeze_live_session(
                session, imported, signature, config, bound=bound, label=path, probe=probe,
                size_limit=size_limit, progress=progress,
                description={"step": step, "checkpoint": prefix, "graph_def": path},
            )
    return FrozenCheckpoint(published, prefix, step)


def _inference_graph(
    graph: tf.Graph, meta_graph: Any, label: str, config: FreezeConfig
) -> tuple[Any, dict[str, np.ndarray], ModelSignature, set[str]]:
    """The imported graph with `freeze.constants` bound, its bound values, its inputs and
    outputs (`meta_graph`'s, else `config`'s), and the nodes the outputs need.

    Refuses an input the outputs do not read, and warns of a training switch
    left to its default.
    """
    graph_def, bound = bind_placeholders(graph.as_graph_def(), config.constants, label=label)
    signature = meta_signature(graph, graph_def, meta_graph, label, config)
    needed = subgraph_nodes(graph_def, [o.name for o in signature.outputs])
    check_inputs_used(signature, needed, label)
    warn_default_switches(graph_def, needed, signature.names, label=label)
    return graph_def, bound, signature, needed


def _variables_by_name(
    graph: tf.Graph, needed: set[str], prefix: str, stored: Mapping[str, list[int]], path: str
) -> dict[str, tf.Tensor]:
    """`{checkpoint key: tensor}` for the variables the outputs read, each keyed by its name.

    A reference variable is its own tensor; a resource variable is given as
    one of its reads, which is what `Saver` accepts for a handle in a graph.
    """
    var_list: dict[str, tf.Tensor] = {}
    missing: list[str] = []
    mismatched: dict[str, tuple[Sequence[int], Sequence[int]]] = {}
    for op in graph.get_operations():
        if op.name not in needed or op.type not in ("VariableV2", "VarHandleOp"):
            continue
        shape = tf.TensorShape(op.get_attr("shape"))
        if op.name not in stored:
            missing.append(op.name)
            continue
        if shape.is_fully_defined() and shape.as_list() != list(stored[op.name]):
            mismatched[op.name] = (shape.as_list(), stored[op.name])
            continue
        if op.type == "VariableV2":
            var_list[op.name] = op.outputs[0]
        else:
            reads = [c for c in op.outputs[0].consumers() if c.type == "ReadVariableOp"]
            if not reads:
                raise FreezeError(f"Variable {op.name!r} of {path} is never read; it cannot be restored.")
            var_list[op.name] = reads[0].outputs[0]
    if missing or mismatched:
        raise RestoreMismatchError(
            prefix, missing=missing, mismatched=mismatched,
            hint=f"give a checkpoint of the run that wrote {path}.",
        )
    return var_list


def freeze_session(
    session: tf.compat.v1.Session,
    config: FreezeConfig,
    *,
    description: Mapping[str, Any] | None = None,
    probe: ProbeLike = None,
    size_limit: int = PROTOBUF_LIMIT_BYTES,
    progress: ProgressFactory | None = None,
) -> FrozenGraph:
    """Freeze the graph of a live TF1 session, e.g. at the end of `CheckpointSessionHook`.

    `config.input_names` and `config.output_names` must name nodes of the
    session's graph, and every placeholder the outputs read must be an input
    or bound by `config.constants`. The frozen graph is verified against the
    session itself. `description` sets sidecar keys (`step`, `checkpoint`),
    as in `publish_frozen_graph`.

    Raises:
        FreezeError: A name is not in the graph, a constant does not fit its
            placeholder, a placeholder is neither an input nor bound, or the
            frozen graph differs from the session.
    """
    graph = session.graph
    label = "the session's graph"
    graph_def, bound = bind_placeholders(graph.as_graph_def(), config.constants, label=label)
    names = {node.name for node in graph_def.node}
    for name in config.output_names or ():
        require_node(name, names, "output", label, [])
    for name in config.input_names or ():
        require_node(name, names, "input", label, [])
    signature = ModelSignature(
        tuple(tensor_info(graph, name, {}) for name in config.input_names or ()),
        tuple(tensor_info(graph, name, {}) for name in config.output_names or ()),
    )
    needed = subgraph_nodes(graph_def, [o.name for o in signature.outputs])
    check_placeholders_fed(graph_def, needed, signature.names, label=label)
    warn_default_switches(graph_def, needed, signature.names, label=label)
    with quiet_tensorflow():
        return _freeze_live_session(
            session, graph_def, signature, config, bound=bound, label=label, probe=probe,
            size_limit=size_limit, description=description or {}, progress=progress,
        )


def _freeze_live_session(
    session: tf.compat.v1.Session,
    graph_def: Any,
    signature: ModelSignature,
    config: FreezeConfig,
    *,
    bound: Mapping[str, np.ndarray],
    label: str,
    probe: ProbeLike,
    size_limit: int,
    description: Mapping[str, Any],
    progress: ProgressFactory | None = None,
) -> FrozenGraph:
    """Fold the session's variable values into `graph_def`, verify against the session, publish.

    `bound` holds the values `graph_def`'s bound placeholders were given
    (`{"is_training:0": False}`); the session is fed them when it is the
    reference, and the branches they leave untaken are pruned first.
    """
    if bound or _conditionals_v2(graph_def):
        from tfcheckpointer.graph.optimize import prune_control_flow

        graph_def = prune_control_flow(graph_def, signature)
    hint = _control_flow_hint(graph_def)
    try:
        frozen = session_skeleton(session, graph_def, [o.name for o in signature.outputs])
    except (ValueError, tf.errors.OpError) as error:
        raise FreezeError(f"Cannot freeze {label}: {tensorflow_error_line(error)}{hint}") from None
    clear_devices(frozen.skeleton)
    prune_unused_functions(frozen.skeleton)
    check_no_variables(frozen.skeleton)
    graph = session.graph
    feeds = [graph.get_tensor_by_name(i.tensor) for i in signature.inputs]
    fetches = [graph.get_tensor_by_name(o.tensor) for o in signature.outputs]

    def reference(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            return session.run(fetches, {**bound, **dict(zip(feeds, inputs))})
        except tf.errors.OpError as error:
            raise FreezeError(f"Cannot run {label}: {tensorflow_error_line(error)}") from None

    try:
        return publish_frozen_graph(
            frozen, config, signature, reference=reference, probe=probe, size_limit=size_limit,
            description=description, progress=progress,
        )
    except VerificationError:
        raise
    except FreezeError as error:
        if not hint:
            raise
        raise FreezeError(f"{error}{hint}") from None


# `While` is not among them: it freezes as it is (a Keras LSTM's loop does), and
# lowering it would give TFLite, which refuses control flow v1, a loop it cannot convert.
_CONDITIONAL_OPS = frozenset({"If", "StatelessIf", "Case", "StatelessCase"})


def _conditionals_v2(graph_def: Any) -> list[str]:
    """The graph's control flow v2 conditionals (`If`, `Case`), sorted by name."""
    return sorted(n.name for n in graph_def.node if n.op in _CONDITIONAL_OPS)


def _control_flow_hint(graph_def: Any) -> str:
    """A hint for a failed freeze of a graph with control flow v2 conditionals left, else ''.

    `convert_variables_to_constants` folds the variables an `If`'s branch
    functions read into constants but leaves the functions naming the read's
    output, so the frozen graph fails to run ("Return readvariableop ->
    ReadVariableOp:value:0 is not found"). Grappler lowers such ops first,
    except those marked not to be (`_lower_using_switch_merge: false`, as
    XLA-compiled code marks them).
    """
    nodes = _conditionals_v2(graph_def)
    if not nodes:
        return ""
    shown = ", ".join(nodes[:3]) + (", ..." if len(nodes) > 3 else "")
    return (
        f" HINT: its control flow v2 conditionals ({shown}) are marked not to be lowered to Switch/Merge "
        "(_lower_using_switch_merge), and the variables their branches read cannot be frozen; "
        "build the graph after tf.compat.v1.disable_control_flow_v2()."
    )


def _basename_of(meta: str) -> str | None:
    """`model.ckpt` for `.../model.ckpt-100.meta`; None for a name without a step."""
    name = os.path.basename(meta)
    match = re.fullmatch(r"(.+)-\d+" + re.escape(naming.META_SUFFIX), name)
    return match.group(1) if match else None



class _SavedKey(NamedTuple):
    """What a `.meta`'s Saver restores under one checkpoint key."""

    nodes: list[str | None]  # the variable node of each tensor (one per slice); None: not found
    shape: list[int] | None  # the key's full shape; None where unknown
    sliced: bool  # a partitioned variable, restored slice by slice


def _saver_keys(graph: tf.Graph, meta_graph: Any) -> dict[str, _SavedKey]:
    """`{checkpoint key: _SavedKey}` for what the `.meta`'s Saver restores.

    Read off the restore subgraph: `RestoreV2` names the keys, and each of its
    outputs flows (through identities) into an `Assign` / `AssignVariableOp`
    on the variable. A partitioned variable's key comes once per slice, with
    a slice spec that starts with its full shape (`"3 4 0,2:0,4"`).
    """
    scope = meta_graph.saver_def.restore_op_name.rsplit("/", 1)[0]
    restored: dict[str, _SavedKey] = {}
    for op in graph.get_operations():
        if op.type != "RestoreV2" or not op.name.startswith(scope + "/"):
            continue
        keys = tf.get_static_value(op.inputs[1])
        slices = tf.get_static_value(op.inputs[2])
        if keys is None or slices is None:
            continue
        for key, part, output in zip(keys, slices, op.outputs):
            node, shape = _assigned_variable(output)
            if part:
                shape = [int(size) for size in part.decode().split()[:-1]]
            entry = restored.setdefault(key.decode(), _SavedKey([], shape, bool(part)))
            entry.nodes.append(node)
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
        key: (saved.shape, stored[key])
        for key, saved in restored.items()
        if key in stored and saved.shape is not None and list(saved.shape) != list(stored[key])
    }
    # A key whose variable the walk did not find counts as needed.
    required = {
        key for key, saved in restored.items()
        if any(node is None or node in needed for node in saved.nodes)
    }
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
        subset = {key: [by_node.get(node) for node in restored[key].nodes] for key in required}
        absent = sorted(key for key, found in subset.items() if None in found)
        if absent:
            raise FreezeError(
                f"{prefix} lacks or reshapes {', '.join(sorted(missing | set(mismatched)))}, "
                f"which the Saver of {meta} restores; the outputs do not need them, but the "
                f"graph lists no variable for {', '.join(absent)}, so those cannot be restored "
                "alone."
            )
        var_list = {
            key: found if restored[key].sliced else found[0] for key, found in subset.items()
        }
        tf.compat.v1.train.Saver(var_list=var_list).restore(session, prefix)
    except (ValueError, tf.errors.OpError) as error:
        raise CheckpointError(f"Cannot restore checkpoint {prefix}: {first_line(error)}") from None
