"""`freeze.optimize`: a smaller frozen graph, same names, same outputs, verified as published."""

from __future__ import annotations

import collections
import json
import logging
import os
import types

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.grappler import tf_optimizer

from tests.helpers import convnet, mlp, recurrent, run_in_tf1_session, two_in_two_out
from tfcheckpointer.config import FreezeConfig
from tfcheckpointer.errors import FreezeError
from tfcheckpointer.graph.files import read_graph_def
from tfcheckpointer.graph.keras_freeze import freeze_graph_def, freeze_model, model_signature
from tfcheckpointer.graph.nodes import VARIABLE_OPS
from tfcheckpointer.graph import optimize
from tfcheckpointer.graph.optimize import check_signature_kept, optimize_graph_def

NAMES = {"input_names": ("inputs/X",), "output_names": ("output/predict",)}


def with_trained_statistics(model):
    """Give every bias, batch-norm scale, offset and moving statistic a non-trivial value.

    Fresh layers have zero biases and offsets, which Grappler folds away as `x + 0`;
    a trained model's do not.
    """
    rng = np.random.default_rng(7)
    for variable in model.variables:
        values = rng.uniform(0.5, 1.5, variable.shape)
        if "variance" not in variable.path:
            values *= rng.choice([-1.0, 1.0], variable.shape)
        variable.assign(values.astype(variable.dtype))
    return model


def op_histogram(path) -> collections.Counter:
    graph_def = read_graph_def(str(path))
    return collections.Counter(n.op for n in graph_def.node)


def test_optimized_convnet_is_smaller_and_equals_the_live_model(tmp_path):
    model = with_trained_statistics(convnet())
    plain = freeze_model(model, FreezeConfig(output=str(tmp_path / "plain.pb"), **NAMES))
    optimized = freeze_model(
        model, FreezeConfig(output=str(tmp_path / "opt.pb"), optimize=True, **NAMES)
    )
    assert optimized.node_count < plain.node_count
    x = np.random.default_rng(1).standard_normal((3, 6, 6, 2)).astype("float32")
    (got,) = run_in_tf1_session(tmp_path / "opt.pb", {"inputs/X": x}, ["output/predict"])
    np.testing.assert_allclose(got, model(x, training=False).numpy(), rtol=0, atol=1e-5)


def test_sidecar_reports_nodes_and_bytes_before_and_after(tmp_path):
    model = with_trained_statistics(convnet())
    plain = freeze_model(model, FreezeConfig(output=str(tmp_path / "plain.pb"), **NAMES))
    optimized = freeze_model(
        model, FreezeConfig(output=str(tmp_path / "opt.pb"), optimize=True, **NAMES)
    )
    sidecar = json.loads((tmp_path / "opt.pb.json").read_text())
    assert sidecar["optimized"] == {
        "nodes_before": plain.node_count,
        "nodes_after": optimized.node_count,
        "bytes_before": plain.bytes,
        "bytes_after": optimized.bytes,
    }
    assert sidecar["node_count"] == optimized.node_count
    assert optimized.optimized.as_dict() == sidecar["optimized"]
    assert sidecar["verified"] is True and sidecar["max_abs_diff"] <= 1e-5
    assert json.loads((tmp_path / "plain.pb.json").read_text())["optimized"] is None
    assert plain.optimized is None


def test_batch_norm_is_folded_and_nothing_training_only_remains(tmp_path):
    model = with_trained_statistics(convnet())
    freeze_model(model, FreezeConfig(output=str(tmp_path / "opt.pb"), optimize=True, **NAMES))
    ops = op_histogram(tmp_path / "opt.pb")
    # Keras 3 batch norm is Rsqrt(variance + eps) * gamma and beta - mean * scale: all constants.
    assert not {"Rsqrt", "Sub", "NoOp"} & set(ops)
    assert not [op for op in ops if op.startswith(("FusedBatchNorm", "Random", "Stateless"))]
    assert not VARIABLE_OPS & set(ops)
    assert ops["Identity"] == 1  # the configured output, nothing else
    assert not [op for op in ops if op.startswith("_")]  # no device-specific fused ops
    graph_def = read_graph_def(str(tmp_path / "opt.pb"))
    assert not [n.name for n in graph_def.node if "dropout" in n.name.lower() or n.device]


@pytest.mark.parametrize(
    "build, feeds, outputs",
    [
        (recurrent, {"inputs/X": (2, 5, 3)}, ["output/predict"]),
        (two_in_two_out, {"image": (4, 5), "meta": (4, 2)}, ["label", "score"]),
    ],
    ids=["lstm", "two-in-two-out"],
)
def test_optimized_graph_equals_the_live_model(tmp_path, build, feeds, outputs):
    model = with_trained_statistics(build())
    config = FreezeConfig(
        output=str(tmp_path / "opt.pb"),
        input_names=tuple(feeds),
        output_names=tuple(outputs),
        optimize=True,
    )
    frozen = freeze_model(model, config)
    assert frozen.optimized.nodes_after < frozen.optimized.nodes_before
    rng = np.random.default_rng(2)
    arrays = {name: rng.standard_normal(shape).astype("float32") for name, shape in feeds.items()}
    got = run_in_tf1_session(tmp_path / "opt.pb", arrays, outputs)
    live = model(arrays if len(arrays) > 1 else arrays["inputs/X"], training=False)
    expected = [live[name] for name in outputs] if isinstance(live, dict) else [live]
    for actual, want in zip(got, expected):
        np.testing.assert_allclose(actual, want.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "build, input_names, output_names",
    [
        (recurrent, ("inputs/X",), ("output/predict",)),
        (two_in_two_out, ("in/image", "in/meta"), ("out/label", "out/score")),
    ],
    ids=["lstm", "two-in-two-out"],
)
def test_exactly_the_configured_inputs_and_outputs_are_kept(build, input_names, output_names):
    signature = model_signature(build(), input_names, output_names)
    # The frozen LSTM also holds placeholders nothing reads (`unused_control_flow_input_*`).
    optimized, _ = optimize_graph_def(freeze_graph_def(build(), signature), signature)
    nodes = {n.name: n for n in optimized.node}
    assert sorted(n.name for n in optimized.node if n.op == "Placeholder") == sorted(input_names)
    float32 = tf.float32.as_datatype_enum
    assert [nodes[name].attr["dtype"].type for name in input_names] == [float32] * len(input_names)
    outputs = [(nodes[name].op, nodes[name].attr["T"].type) for name in output_names]
    assert outputs == [("Identity", float32)] * len(output_names)


def test_the_report_is_logged(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="tfcheckpointer"):
        frozen = freeze_model(mlp(), FreezeConfig(output=str(tmp_path / "f.pb"), optimize=True))
    report = frozen.optimized
    assert (
        f"Optimized frozen graph nodes={report.nodes_before}->{report.nodes_after} "
        f"bytes={report.bytes_before}->{report.bytes_after}"
    ) in caplog.messages


def test_a_grappler_failure_is_one_freeze_error_and_publishes_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise tf.errors.InvalidArgumentError(None, None, "bad graph\nmore detail")

    # Only the optimize module's Grappler: freezing itself runs Grappler too.
    monkeypatch.setattr(optimize, "tf_optimizer", types.SimpleNamespace(OptimizeGraph=fail))
    with pytest.raises(
        FreezeError,
        match=r"^Grappler could not optimize the frozen graph: InvalidArgumentError: bad graph "
        r"HINT: set freeze.optimize: false to publish the graph unoptimized\.$",
    ):
        freeze_model(mlp(), FreezeConfig(output=str(tmp_path / "f.pb"), optimize=True, **NAMES))
    assert os.listdir(tmp_path) == []


def test_a_lost_output_is_named_and_nothing_is_published(tmp_path, monkeypatch):
    def lose_the_output(*args, **kwargs):
        graph_def = tf_optimizer.OptimizeGraph(*args, **kwargs)
        kept = [n for n in graph_def.node if n.name != "output/predict"]
        del graph_def.node[:]
        graph_def.node.extend(kept)
        return graph_def

    grappler = types.SimpleNamespace(OptimizeGraph=lose_the_output)
    monkeypatch.setattr(optimize, "tf_optimizer", grappler)
    with pytest.raises(FreezeError, match=r"lacks the configured node\(s\) \['output/predict'\]\."):
        freeze_model(mlp(), FreezeConfig(output=str(tmp_path / "f.pb"), optimize=True, **NAMES))
    assert os.listdir(tmp_path) == []


def test_a_changed_output_op_is_refused():
    model = mlp()
    signature = model_signature(model, *NAMES.values())
    before = freeze_graph_def(model, signature)
    after = tf.compat.v1.GraphDef()
    after.CopyFrom(before)
    next(n for n in after.node if n.name == "output/predict").op = "Snapshot"
    with pytest.raises(
        FreezeError,
        match=r"changed configured node\(s\): output/predict is Snapshot float32, "
        r"was Identity float32\. HINT",
    ):
        check_signature_kept(before, after, signature)
