"""Freezing a checkpoint after the fact: `tfcheckpointer freeze`.

Two routes lead to the same verified frozen GraphDef, named, published and
described (JSON sidecar) as the train-end freeze (`freeze.freeze_model`) does:

- **TF1** (`freeze_meta_graph`): a `.meta` MetaGraphDef is imported into a
  fresh graph, the checkpoint is restored with its Saver, the variables the
  outputs read are folded into constants (`convert_variables_to_constants`,
  which also drops the save/restore subgraph) and device strings are
  cleared. The written file is checked against the restored session graph.
- **Keras** (`freeze_keras_checkpoint`): the model comes from a job file's
  `model.factory` (`freeze_from_config`) or a saved `.keras` file
  (`load_keras_model`); the checkpoint's model variables are restored into it
  (optimizer state is not needed) and `freeze_model` does the rest.

A checkpoint is given as a prefix (`model.ckpt-100`, or its `.index` file), a
directory (its newest checkpoint) or `latest` (the newest in a default
directory). Every problem is a `TfCheckpointerError` raised before anything is
written; nothing is left at the output path unless verification passed.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfcheckpointer import naming
from tfcheckpointer.access import EagerVariables
from tfcheckpointer.config import FreezeConfig, JobConfig, parse_freeze_section
from tfcheckpointer.errors import (
    CheckpointError,
    ConfigError,
    FreezeError,
    RestoreMismatchError,
)
from tfcheckpointer.freeze import (
    FrozenGraph,
    ModelSignature,
    PROTOBUF_LIMIT_BYTES,
    TensorInfo,
    check_graph_size,
    check_no_variables,
    clear_devices,
    freeze_model,
    publish_frozen_graph,
)
from tfcheckpointer.inspection import prefix_of_data_file, read_meta_graph_def, sniff_graph_file
from tfcheckpointer.keys import checkpoint_variables
from tfcheckpointer.metagraph import (
    INPUTS_COLLECTION,
    OUTPUTS_COLLECTION,
    SERVING_SIGNATURE_KEY,
)
from tfcheckpointer.writer import check_compatible, checkpoint_shapes, quiet_tensorflow

LATEST = "latest"
"""`--checkpoint latest`: the newest checkpoint of the default directory."""

COMMAND_LINE = "<command line>"

_PREFIX_STEP = re.compile(r"-(\d+)$")
_ANY_INDEX_FILE = re.compile(r"(?P<basename>.+)-(?P<step>\d+)" + re.escape(naming.INDEX_SUFFIX))


@dataclasses.dataclass(frozen=True)
class FrozenCheckpoint:
    """A published frozen graph and the checkpoint it was frozen from."""

    frozen: FrozenGraph
    checkpoint: str
    step: int | None


# --- Checkpoints -----------------------------------------------------------------------


def resolve_checkpoint(
    checkpoint: str, *, directory: str | None = None, basename: str | None = None
) -> str:
    """The checkpoint prefix that `checkpoint` names.

    Args:
        checkpoint: `latest`, a directory (its newest checkpoint), a prefix
            such as `runs/ckpt/model.ckpt-100`, or that prefix's `.index` file.
        directory: Where `latest` looks.
        basename: Only `<basename>-<step>` checkpoints count when a directory
            has no `checkpoint` state file; None accepts any basename.

    Raises:
        CheckpointError: There is no checkpoint there, or the path is a graph
            file or a data shard rather than a checkpoint.
    """
    checkpoint = os.fspath(checkpoint)
    if checkpoint == LATEST:
        if directory is None:
            raise CheckpointError(
                "`--checkpoint latest` needs a checkpoint directory, and none is known here. "
                "HINT: give a checkpoint prefix (model.ckpt-100) or a directory."
            )
        checkpoint = directory
    if tf.io.gfile.isdir(checkpoint):
        return _newest_in(checkpoint, basename)
    shard_of = prefix_of_data_file(checkpoint)
    if shard_of is not None:
        raise CheckpointError(
            f"{checkpoint} is one data shard of a checkpoint, not a whole checkpoint. "
            f"HINT: give the checkpoint prefix {shard_of}."
        )
    if checkpoint.endswith(naming.INDEX_SUFFIX):
        checkpoint = checkpoint[: -len(naming.INDEX_SUFFIX)]
    if tf.io.gfile.exists(checkpoint + naming.INDEX_SUFFIX):
        return checkpoint
    if tf.io.gfile.exists(checkpoint):
        sniffed = sniff_graph_file(checkpoint)
        what = f"a {sniffed[0]}" if sniffed else f"no checkpoint: there is no {checkpoint}.index"
        raise CheckpointError(
            f"{checkpoint} is {what}, not a checkpoint. HINT: give a checkpoint prefix "
            "(model.ckpt-100, the name before .index), its directory or `latest`."
        )
    raise CheckpointError(
        f"No checkpoint at {checkpoint} ({checkpoint}{naming.INDEX_SUFFIX} does not exist). "
        "HINT: give a checkpoint prefix (model.ckpt-100), its directory or `latest`."
    )


def _newest_in(directory: str, basename: str | None) -> str:
    """The state file's checkpoint, else the highest `<basename>-<step>.index` there."""
    try:
        latest = tf.train.latest_checkpoint(directory)
    except (ValueError, tf.errors.OpError):  # a damaged state file: fall back to the files
        latest = None
    if latest is not None and tf.io.gfile.exists(latest + naming.INDEX_SUFFIX):
        return latest
    found = []
    for filename in tf.io.gfile.listdir(directory):
        match = _ANY_INDEX_FILE.fullmatch(filename.rstrip("/"))
        if match and (basename is None or match.group("basename") == basename):
            found.append((int(match.group("step")), match.group(0)[: -len(naming.INDEX_SUFFIX)]))
    if not found:
        named = f"{basename}-<step>" if basename else "<basename>-<step>"
        raise CheckpointError(
            f"No checkpoint in directory {directory}: no `{naming.STATE_FILENAME}` state file and "
            f"no {named}{naming.INDEX_SUFFIX} file. HINT: give the directory a training run "
            "writes checkpoints to, or a checkpoint prefix."
        )
    return f"{directory.rstrip('/')}/{max(found)[1]}"


def checkpoint_step(prefix: str) -> int | None:
    """The checkpoint's `global_step`, else the number ending the prefix, else None."""
    shapes = checkpoint_shapes(prefix)
    if naming.GLOBAL_STEP_KEY in shapes and not shapes[naming.GLOBAL_STEP_KEY]:
        try:
            return int(tf.train.load_checkpoint(prefix).get_tensor(naming.GLOBAL_STEP_KEY))
        except Exception as error:  # the C++ reader maps file damage to many Python types
            raise CheckpointError(
                f"Cannot read {naming.GLOBAL_STEP_KEY} from {prefix}: {error}"
            ) from None
    match = _PREFIX_STEP.search(prefix)
    return int(match.group(1)) if match else None


def _rehint(error: RestoreMismatchError, hint: str) -> RestoreMismatchError:
    """The same error with the HINT of this context (its own speaks of resuming training)."""
    error.args = (str(error).rsplit("\nHINT: ", 1)[0] + f"\nHINT: {hint}",)
    return error


# --- Settings --------------------------------------------------------------------------


def freeze_settings(
    base: FreezeConfig | None = None,
    *,
    output: str | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    verify_tolerance: float | None = None,
    optimize: bool | None = None,
    source: str = COMMAND_LINE,
) -> FreezeConfig:
    """`base` (a job's `freeze:` section, or the defaults) with the given values replacing its own.

    The values are checked as the YAML keys are (`freeze.output` must end in
    `.pb` or `.pbtxt`, names are node names); a tensor name `name:0` is
    accepted for a node name.

    Raises:
        ConfigError: No output path at all, or a value the YAML key would refuse.
    """
    given = {
        "output": output,
        "input_names": _node_names(input_names),
        "output_names": _node_names(output_names),
        "verify_tolerance": verify_tolerance,
        "optimize": optimize,
    }
    given = {key: value for key, value in given.items() if value is not None}
    if base is None and "output" not in given:
        raise ConfigError(
            "no output path for the frozen graph",
            file=source,
            key="freeze.output",
            hint="pass --output PATH.pb (or give the job file a freeze: section)",
        )
    checked = parse_freeze_section(
        {"output": base.output if base else None, **given}, source=source
    )
    assert checked is not None  # a mapping was given
    return dataclasses.replace(
        base or checked, **{key: getattr(checked, key) for key in given}
    )


def _node_names(names: Sequence[str] | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    return tuple(name[:-2] if name.endswith(":0") else name for name in names)


# --- Keras route -----------------------------------------------------------------------


def freeze_from_config(
    job: JobConfig,
    *,
    checkpoint: str = LATEST,
    config: FreezeConfig | None = None,
    probe: Sequence[np.ndarray] | None = None,
) -> FrozenCheckpoint:
    """Build the job's model with `model.factory`, restore a checkpoint, freeze it.

    Args:
        job: A validated job file; `model:` is required, `data:` is not used.
        checkpoint: `latest` (the newest in `checkpoint.directory`), a
            directory or a prefix.
        config: How to freeze; by default the job's `freeze:` section.
        probe: Verification inputs, one array per model input.
    """
    from tfcheckpointer.job import resolve_factory

    if job.model is None:
        raise ConfigError(
            "model.factory is required to freeze from a job file",
            file=job.source,
            key="model.factory",
            hint="add a 'model:' section with 'factory: package.module:function', "
            "or pass --model MODEL.keras",
        )
    config = config or job.freeze
    if config is None:
        raise ConfigError(
            "the job file has no freeze: section", file=job.source, key="freeze",
            hint="pass --output PATH.pb or add a freeze: section",
        )
    prefix = resolve_checkpoint(
        checkpoint, directory=job.checkpoint.directory, basename=job.checkpoint.basename
    )
    build_model = resolve_factory(job.model, key="model.factory", source=job.source)
    model = build_model(**job.model.kwargs)
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"expected the factory to return a keras.Model, got {type(model).__name__}",
            file=job.source,
            key="model.factory",
        )
    return freeze_keras_checkpoint(
        model, prefix, config, basename=job.checkpoint.basename, probe=probe
    )


def load_keras_model(path: str) -> keras.Model:
    """A model's architecture (and weights, soon replaced) from a `.keras` file, not compiled."""
    path = os.fspath(path)
    if not tf.io.gfile.exists(path):
        raise FreezeError(f"No such file: {path}")
    sniffed = sniff_graph_file(path)
    if sniffed is not None:
        raise FreezeError(
            f"{path} is a {sniffed[0]}, not a Keras model. HINT: give a .keras file to --model "
            "(freeze a .meta with --meta)."
        )
    try:
        with quiet_tensorflow():
            return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras reports a bad file with many exception types
        raise FreezeError(
            f"Cannot load a Keras model from {path}: {_first_line(error).rstrip('.')}. "
            "HINT: give a file written by model.save('model.keras')."
        ) from None


def freeze_keras_checkpoint(
    model: keras.Model,
    checkpoint: str,
    config: FreezeConfig,
    *,
    basename: str | None = None,
    probe: Sequence[np.ndarray] | None = None,
) -> FrozenCheckpoint:
    """Restore a checkpoint's model variables into `model` and freeze it with `freeze_model`.

    Only the model's variables must be in the checkpoint; optimizer state is
    not needed and `global_step` (the step in the sidecar) is optional.

    Args:
        model: A built functional or Sequential model of the checkpoint's
            architecture. Without an optimizer it is compiled with a plain
            SGD one, so that its checkpoint keys can be derived.
        checkpoint: A prefix or a directory (its newest checkpoint).
        config: How to freeze; `config.output` is the file to write.
        basename: In a directory without a state file, only
            `<basename>-<step>` checkpoints count.
        probe: Verification inputs, one array per model input.

    Raises:
        RestoreMismatchError: The checkpoint holds another model.
    """
    prefix = resolve_checkpoint(checkpoint, basename=basename)
    if getattr(model, "optimizer", None) is None:
        model.compile(optimizer=keras.optimizers.SGD())
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    variables = EagerVariables(checkpoint_variables(model, include_optimizer=False))
    shapes = variables.shapes()
    try:
        check_compatible(prefix, shapes, optional={naming.GLOBAL_STEP_KEY})
    except RestoreMismatchError as error:
        raise _rehint(error, "give a checkpoint written while training this model.") from None
    present = checkpoint_shapes(prefix)
    step = checkpoint_step(prefix)
    variables.restore(prefix, [key for key in shapes if key in present])
    frozen = freeze_model(model, config, step=step, checkpoint=prefix, probe=probe)
    return FrozenCheckpoint(frozen, prefix, step)


# --- TF1 route -------------------------------------------------------------------------


def freeze_meta_graph(
    meta: str,
    config: FreezeConfig,
    *,
    checkpoint: str = LATEST,
    probe: Sequence[np.ndarray] | None = None,
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
    step = checkpoint_step(prefix)

    graph = tf.Graph()
    with graph.as_default(), quiet_tensorflow():
        try:
            saver = tf.compat.v1.train.import_meta_graph(meta_graph, clear_devices=True)
        except (ValueError, TypeError, KeyError, tf.errors.OpError) as error:
            raise FreezeError(f"Cannot import {meta} into a graph: {_first_line(error)}") from None
        graph_def = graph.as_graph_def()
        signature = _meta_signature(graph, graph_def, meta_graph, meta, config)
        needed = _subgraph_nodes(graph_def, [o.name for o in signature.outputs])
        _check_inputs_used(signature, needed, meta)
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
    step: int | None = None,
    checkpoint: str | None = None,
    probe: Sequence[np.ndarray] | None = None,
    size_limit: int = PROTOBUF_LIMIT_BYTES,
) -> FrozenGraph:
    """Freeze the graph of a live TF1 session, e.g. at the end of `CheckpointSessionHook`.

    `config.input_names` and `config.output_names` must name nodes of the
    session's graph. The frozen graph is verified against the session itself.
    """
    graph = session.graph
    graph_def = graph.as_graph_def()
    names = {node.name for node in graph_def.node}
    label = "the session's graph"
    for name in config.output_names or ():
        _require_node(name, names, "output", label, [])
    for name in config.input_names or ():
        _require_node(name, names, "input", label, [])
    signature = ModelSignature(
        tuple(_tensor_info(graph, name, {}) for name in config.input_names or ()),
        tuple(_tensor_info(graph, name, {}) for name in config.output_names or ()),
    )
    with quiet_tensorflow():
        return _freeze_live_session(
            session, graph_def, signature, config, label=label, probe=probe,
            size_limit=size_limit, description={"step": step, "checkpoint": checkpoint},
        )


def _freeze_live_session(
    session: tf.compat.v1.Session,
    graph_def: Any,
    signature: ModelSignature,
    config: FreezeConfig,
    *,
    label: str,
    probe: Sequence[np.ndarray] | None,
    size_limit: int,
    description: Mapping[str, Any],
) -> FrozenGraph:
    """Fold the session's variable values into `graph_def`, verify against the session, publish."""
    try:
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            session, graph_def, [o.name for o in signature.outputs]
        )
    except (ValueError, tf.errors.OpError) as error:
        raise FreezeError(f"Cannot freeze {label}: {_first_line(error)}") from None
    clear_devices(frozen)
    check_no_variables(frozen)
    check_graph_size(frozen, size_limit)
    graph = session.graph
    feeds = [graph.get_tensor_by_name(i.tensor) for i in signature.inputs]
    fetches = [graph.get_tensor_by_name(o.tensor) for o in signature.outputs]

    def reference(inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        try:
            return session.run(fetches, dict(zip(feeds, inputs)))
        except tf.errors.OpError as error:
            raise FreezeError(f"Cannot run {label}: {_first_line(error)}") from None

    return publish_frozen_graph(
        frozen, config, signature, reference=reference, probe=probe, size_limit=size_limit,
        description=description,
    )


def _basename_of(meta: str) -> str | None:
    """`model.ckpt` for `.../model.ckpt-100.meta`; None for a name without a step."""
    name = os.path.basename(meta)
    match = re.fullmatch(r"(.+)-\d+" + re.escape(naming.META_SUFFIX), name)
    return match.group(1) if match else None


def _meta_signature(
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
        _require_node(name, names, "output", meta, declared_outputs)
    for name in config.input_names or ():
        _require_node(name, names, "input", meta, declared_inputs)
    needed = _subgraph_nodes(graph_def, output_names)
    if config.input_names is not None:
        input_names = list(config.input_names)
    else:
        input_names = [name for name in declared_inputs if name in needed]
    # Placeholders the outputs read must be fed, named or not.
    resource = tf.resource.as_datatype_enum
    input_names += [
        node.name
        for node in graph_def.node
        if node.name in needed
        and node.op == "Placeholder"
        and node.attr["dtype"].type != resource
        and node.name not in input_names
    ]
    shapes = _signature_shapes(meta_graph)
    return ModelSignature(
        tuple(_tensor_info(graph, name, shapes) for name in input_names),
        tuple(_tensor_info(graph, name, shapes) for name in output_names),
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
    return [_node_of(tensor) for tensor in tensors]


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


def _tensor_info(
    graph: tf.Graph, name: str, shapes: Mapping[str, tuple[int | None, ...]]
) -> TensorInfo:
    tensor = graph.get_tensor_by_name(f"{name}:0")
    if tensor.shape.rank is not None:
        shape = tuple(tensor.shape.as_list())
    else:
        shape = shapes.get(tensor.name)
    return TensorInfo(name, tensor.dtype.name, shape)  # type: ignore[arg-type]


def _require_node(
    name: str, names: set[str], kind: str, meta: str, declared: Sequence[str]
) -> None:
    if name in names:
        return
    candidates = sorted(n for n in names if not n.startswith("save/"))
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    text = f"{kind.capitalize()} name {name!r} is not a node of {meta}."
    if close:
        text += " Closest: " + ", ".join(map(repr, close)) + "."
    if declared:
        text += f" Its declared {kind}s: " + ", ".join(map(repr, declared)) + "."
    raise FreezeError(text + f" HINT: pass --{kind}-names with node names of that graph.")


def _subgraph_nodes(graph_def: Any, outputs: Sequence[str]) -> set[str]:
    """Every node that `outputs` depend on, themselves included."""
    by_name = {node.name: node for node in graph_def.node}
    seen: set[str] = set()
    pending = list(outputs)
    while pending:
        name = pending.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        pending.extend(_node_of(source) for source in by_name[name].input)
    return seen


def _check_inputs_used(signature: ModelSignature, needed: set[str], meta: str) -> None:
    unused = [i.name for i in signature.inputs if i.name not in needed]
    if unused:
        raise FreezeError(
            f"Input(s) {unused} of {meta} do not feed the outputs "
            f"{[o.name for o in signature.outputs]}. HINT: pass --input-names the outputs read."
        )


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
            if key not in restored and not key.startswith(naming.OPTIMIZER_SCOPE + "/")
        ]
        raise _rehint(
            RestoreMismatchError(
                prefix,
                missing=required & missing,
                unexpected=unexpected,
                mismatched={k: v for k, v in mismatched.items() if k in required},
            ),
            f"give the checkpoint that {meta} was written with (or a later one of the same run).",
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
        raise CheckpointError(f"Cannot restore checkpoint {prefix}: {_first_line(error)}") from None


# --- Publishing ------------------------------------------------------------------------


# --- Small helpers ---------------------------------------------------------------------


def _node_of(tensor_or_input: str) -> str:
    """`name` of `name`, `name:1` or `^name`."""
    return tensor_or_input.lstrip("^").split(":", 1)[0]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
