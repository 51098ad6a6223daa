"""Inference optimization of a frozen GraphDef (`freeze.optimize: true`).

Grappler folds what the frozen variables made constant (a Keras batch norm's
`Rsqrt`, `Sub` and `Mul` chain becomes one scale and one offset), drops the
identities and no-ops tracing left behind, and `extract_sub_graph` then keeps
only what the configured outputs need. The configured inputs and outputs keep
their names and dtypes, so consumers and the sidecar stay valid.

`optimize_for_inference_lib` is not used: it folds only `FusedBatchNorm` and
`BatchNormWithGlobalNormalization`, which Keras 3 never emits, and left a
Keras 3 convnet unchanged.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
from google.protobuf import message
from tensorflow.core.protobuf import (
    config_pb2,
    device_properties_pb2,
    meta_graph_pb2,
    rewriter_config_pb2,
)
from tensorflow.python.grappler import cluster as grappler_cluster
from tensorflow.python.grappler import tf_optimizer
from tensorflow.python.util import deprecation

from tfcheckpointer.errors import FreezeError, first_line
from tfcheckpointer.graph.nodes import check_no_variables, clear_devices
from tfcheckpointer.graph.signature import ModelSignature

GRAPPLER_PASSES = ("constfold", "arithmetic", "dependency")
"""The only Grappler passes run, in this order; each rewrites ops every consumer knows.

The layout optimizer (inserts transposes for one device's preferred layout)
and the remapper (fuses into `_FusedConv2D`, `_FusedMatMul` and other
internal, device-specific ops) are left out: a frozen graph must run anywhere.
"""

BRANCH_PRUNING_PASSES = ("function", "constfold", "loop", "dependency")
"""The Grappler passes that drop the branches a bound switch no longer takes.

`function` lowers control flow v2 (`If`, `StatelessIf`) into `Switch` /
`Merge`, `constfold` makes their predicates constant once `freeze.constants`
bound the placeholder, and `loop` removes the dead branches (its
`RemoveDeadBranches`). Measured on `batch_normalization` + `dropout` over
`placeholder_with_default(False, [], "is_training")`: one run leaves no
Switch/Merge with control flow v1, but a lowered `If`'s branches survive the
first run and go in a second one; `extract_sub_graph` alone keeps both
branches, since each `Merge` reads both.
"""

_HINT = "HINT: set freeze.optimize: false to publish the graph unoptimized."
_PRUNE_HINT = (
    "HINT: freeze without freeze.constants, or build the graph after "
    "tf.compat.v1.disable_control_flow_v2()."
)


@dataclasses.dataclass(frozen=True)
class OptimizeReport:
    """How much the optimization removed: node count and serialized bytes."""

    nodes_before: int
    nodes_after: int
    bytes_before: int
    bytes_after: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def optimize_graph_def(
    graph_def: tf.compat.v1.GraphDef, signature: ModelSignature
) -> tuple[tf.compat.v1.GraphDef, OptimizeReport]:
    """An inference-only copy of the frozen `graph_def`, and what that removed.

    Raises:
        FreezeError: Grappler failed, or its graph lost or changed a configured
            input or output.
    """
    optimized = _run_grappler(graph_def, signature, GRAPPLER_PASSES, hint=_HINT)
    check_signature_kept(graph_def, optimized, signature)
    keep = [t.name for t in signature.outputs + signature.inputs]
    with deprecation.silence():  # extract_sub_graph is "TF1-only" but has no TF2 twin.
        optimized = tf.compat.v1.graph_util.extract_sub_graph(optimized, keep)
    clear_devices(optimized)
    check_no_variables(optimized)
    report = OptimizeReport(
        nodes_before=len(graph_def.node),
        nodes_after=len(optimized.node),
        bytes_before=graph_def.ByteSize(),
        bytes_after=optimized.ByteSize(),
    )
    return optimized, report


def prune_control_flow(
    graph_def: tf.compat.v1.GraphDef, signature: ModelSignature
) -> tf.compat.v1.GraphDef:
    """`graph_def` (variables and all) with `If` ops lowered, less the branches never taken.

    A branch is never taken when its switch's predicate is constant
    (`freeze.constants` bound it). Run before `convert_variables_to_constants`,
    which cannot freeze variables read inside an `If`'s branch functions.

    Raises:
        FreezeError: Grappler failed, or lost or changed an input or output.
    """
    pruned = graph_def
    for _ in range(2):  # the second run prunes what the first one lowered
        pruned = _run_grappler(pruned, signature, BRANCH_PRUNING_PASSES, hint=_PRUNE_HINT)
    check_signature_kept(graph_def, pruned, signature, hint=_PRUNE_HINT)
    return pruned


def check_signature_kept(
    before: tf.compat.v1.GraphDef,
    after: tf.compat.v1.GraphDef,
    signature: ModelSignature,
    *,
    hint: str = _HINT,
) -> None:
    """Raise unless every configured input and output is in `after` as it was in `before`.

    "As it was" is the same op and dtype: a frozen model's inputs stay
    placeholders and its outputs the named identities consumers fetch.
    """
    old = {n.name: n for n in before.node}
    new = {n.name: n for n in after.node}
    names = signature.names
    missing = [name for name in names if name not in new]
    if missing:
        raise FreezeError(
            f"The optimized frozen graph lacks the configured node(s) {missing}. {hint}"
        )
    changed = [
        f"{name} is {_kind(new[name])}, was {_kind(old[name])}"
        for name in names
        if name in old and _kind(new[name]) != _kind(old[name])
    ]
    if changed:
        raise FreezeError(
            f"The optimized frozen graph changed configured node(s): {'; '.join(changed)}. {hint}"
        )


def _kind(node: tf.compat.v1.NodeDef) -> str:
    """`Placeholder float32`, `Identity int64`: the op and the dtype it produces."""
    for dtype_attr in ("dtype", "T"):
        if dtype_attr in node.attr:
            return f"{node.op} {tf.as_dtype(node.attr[dtype_attr].type).name}"
    return node.op


def _run_grappler(
    graph_def: tf.compat.v1.GraphDef, signature: ModelSignature, passes: tuple[str, ...], *, hint: str
) -> tf.compat.v1.GraphDef:
    # A virtual one-CPU cluster: the result must not depend on the GPUs of the machine
    # that happens to freeze the model.
    cluster = grappler_cluster.Cluster(
        devices=[
            device_properties_pb2.NamedDevice(
                name="/job:localhost/replica:0/task:0/device:CPU:0",
                properties=device_properties_pb2.DeviceProperties(type="CPU"),
            )
        ]
    )
    try:
        return tf_optimizer.OptimizeGraph(
            _rewriter_config(passes), _grappler_item(graph_def, signature), verbose=False, cluster=cluster
        )
    except (tf.errors.OpError, message.DecodeError, RuntimeError, ValueError) as error:
        raise FreezeError(
            f"Grappler could not optimize the frozen graph: {type(error).__name__}: "
            f"{first_line(error)} {hint}"
        ) from None
    finally:
        cluster.Shutdown()


def _grappler_item(
    graph_def: tf.compat.v1.GraphDef, signature: ModelSignature
) -> meta_graph_pb2.MetaGraphDef:
    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.graph_def.CopyFrom(graph_def)
    # Fetches: Grappler keeps these nodes as they are and prunes what they do not need.
    meta_graph.collection_def["train_op"].node_list.value.extend(o.name for o in signature.outputs)
    # Feeds: the placeholders survive, and nothing is folded through them. Grappler aborts
    # the process (not an exception) on a feed without a dtype, so every field is set.
    serving = meta_graph.signature_def["serving_default"]
    for spec in signature.inputs:
        serving.inputs[spec.name].CopyFrom(spec.as_proto())
    for spec in signature.outputs:
        serving.outputs[spec.name].CopyFrom(spec.as_proto())
    return meta_graph


def _rewriter_config(passes: tuple[str, ...]) -> config_pb2.ConfigProto:
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    off = rewriter_config_pb2.RewriterConfig.OFF
    rewrite.optimizers.extend(passes)  # a list replaces the default pipeline
    rewrite.layout_optimizer = off
    rewrite.remapping = off
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.TWO
    rewrite.min_graph_nodes = -1  # by default Grappler skips graphs under 4 nodes
    return config
