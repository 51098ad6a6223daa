"""Freezing a TF1 graph with an `is_training` switch: bind it, keep the inference branch only."""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import attr_value_pb2

from tests.cli.test_cli import run_cli
from tests.helpers import run_in_tf1_session
from tfcheckpointer.cli import main
from tfcheckpointer.config import FreezeConfig
from tfcheckpointer.errors import FreezeError
from tfcheckpointer.graph.files import read_graph_def
from tfcheckpointer.graph.session_freeze import freeze_session
from tfcheckpointer.integrations.session_hook import CheckpointSessionHook

# What `tf.compat.v1.layers` is under TF_USE_LEGACY_KERAS=1; Keras 3 has no TF1 layers.
v1_layers = pytest.importorskip(
    "tf_keras.api._v1.keras.__internal__.legacy.layers", reason="tf_keras is not installed"
)

X = np.random.default_rng(0).standard_normal((16, 3)).astype("float32")
Y = X.sum(axis=1, keepdims=True)
NAMES = {"input_names": ["inputs/X"], "output_names": ["output/predict"]}
# The training branch: both sides of a switch, dropout's random mask, batch norm's moments.
TRAINING_OPS = {
    "Switch", "Merge", "If", "StatelessIf", "RandomUniform", "StatelessRandomUniformV2",
    "StatelessRandomGetKeyCounter", "SquaredDifference",
}


@contextlib.contextmanager
def control_flow(version: str):
    """`tf.cond` builds Switch/Merge (v1) or an `If` op (v2, TensorFlow 2's default)."""
    if version == "v2":
        yield
        return
    tf.compat.v1.disable_control_flow_v2()
    try:
        yield
    finally:
        tf.compat.v1.enable_control_flow_v2()


def build_graph(version: str = "v2", *, required: bool = False, lowered: bool = True):
    """Dense, batch norm and dropout switched by `is_training`; returns (graph, train_op, feeds).

    `lowered=False` marks the v2 `If` ops as XLA-compiled code does, so that
    Grappler leaves them as they are.
    """
    graph = tf.Graph()
    with graph.as_default(), control_flow(version):
        tf.compat.v1.set_random_seed(0)
        global_step = tf.compat.v1.train.get_or_create_global_step()
        inputs = tf.compat.v1.placeholder(tf.float32, [None, 3], name="inputs/X")
        targets = tf.compat.v1.placeholder(tf.float32, [None, 1], name="targets")
        if required:
            training = tf.compat.v1.placeholder(tf.bool, name="is_training")
        else:
            training = tf.compat.v1.placeholder_with_default(False, [], name="is_training")
        hidden = v1_layers.dense(inputs, 4)
        hidden = v1_layers.batch_normalization(hidden, training=training)
        hidden = v1_layers.dropout(hidden, 0.5, training=training)
        prediction = tf.identity(v1_layers.dense(hidden, 1), name="output/predict")
        loss = tf.reduce_mean(tf.square(prediction - targets))
        with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
            train_op = tf.compat.v1.train.AdamOptimizer(0.05).minimize(loss, global_step=global_step)
    for op in graph.get_operations():
        if op.type in ("If", "StatelessIf") and not lowered:
            op._set_attr("_lower_using_switch_merge", attr_value_pb2.AttrValue(b=False))
    return graph, train_op, {inputs: X, targets: Y, training: True}


def train(directory, version: str, freeze=None):
    graph, train_op, feeds = build_graph(version)
    hook = CheckpointSessionHook(directory=str(directory), every_n_steps=5, freeze=freeze)
    with graph.as_default():
        stop = tf.compat.v1.train.StopAtStepHook(last_step=5)
        with tf.compat.v1.train.MonitoredTrainingSession(hooks=[hook, stop]) as session:
            while not session.should_stop():
                session.run(train_op, feeds)
    return hook


def inference_outputs(directory) -> np.ndarray:
    """The trained graph restored from its checkpoint and run with is_training=False."""
    prefix = tf.train.latest_checkpoint(str(directory))
    with tf.Graph().as_default():
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta")
        with tf.compat.v1.Session() as session:
            saver.restore(session, prefix)
            return session.run("output/predict:0", {"inputs/X:0": X, "is_training:0": False})


def assert_inference_only(path, expected):
    graph_def = read_graph_def(str(path))
    ops = {node.op for node in graph_def.node}
    assert not ops & TRAINING_OPS, ops & TRAINING_OPS
    assert not [n.name for n in graph_def.node if "moments" in n.name]
    assert {n.name for n in graph_def.node if n.op == "Placeholder"} == {"inputs/X"}
    (actual,) = run_in_tf1_session(path, {"inputs/X": X}, ["output/predict"])
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module", params=["v1", "v2"])
def trained(request, tmp_path_factory):
    """A switch graph trained with is_training=True and frozen by the hook with it bound."""
    directory = tmp_path_factory.mktemp(f"switch-{request.param}")
    freeze = {"output": str(directory / "hook.pb"), "constants": {"is_training": False}, **NAMES}
    train(directory / "ckpt", request.param, freeze)
    return directory


def test_the_hook_freezes_the_inference_branch_only(trained):
    assert_inference_only(trained / "hook.pb", inference_outputs(trained / "ckpt"))


def test_freeze_meta_with_a_constant_freezes_the_inference_branch_only(trained):
    result = run_cli(
        "freeze", "--meta", str(trained / "ckpt" / "model.ckpt-5.meta"), "-o", "cli.pb",
        "--input-names", "inputs/X", "--output-names", "output/predict",
        "--constant", "is_training=false", cwd=trained,
    )
    assert result.returncode == 0, result.stderr
    assert_inference_only(trained / "cli.pb", inference_outputs(trained / "ckpt"))


def save_untrained(directory, version: str, *, declared: bool = False, **options) -> str:
    """The switch graph's `.meta` and an untrained checkpoint, as a TF1 program writes them.

    `declared` lists `inputs/X` and `is_training` in its `inputs` collection.
    """
    graph, _, _ = build_graph(version, **options)
    with graph.as_default(), tf.compat.v1.Session() as session:
        if declared:
            for name in ("inputs/X", "is_training"):
                tf.compat.v1.add_to_collection("inputs", graph.get_tensor_by_name(f"{name}:0"))
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().save(session, str(directory / "model.ckpt"), global_step=1)
    return str(directory / "model.ckpt-1.meta")


def freeze_cli(capsys, *args: str) -> tuple[int, list[str]]:
    """`tfcheckpointer freeze ...` in this process: its exit status and its stderr lines."""
    status = main(["freeze", *args])
    return status, capsys.readouterr().err.splitlines()


def test_freeze_meta_of_unlowered_control_flow_v2_is_one_line_with_a_hint(tmp_path, capsys):
    meta = save_untrained(tmp_path, "v2", lowered=False)
    status, lines = freeze_cli(
        capsys, "--meta", meta, "-o", str(tmp_path / "f.pb"), "--input-names", "inputs/X",
        "--output-names", "output/predict",
    )
    assert status == 2
    assert lines[-1] == (
        "tfcheckpointer: error: The frozen graph does not run in a TF1 session: Return "
        "readvariableop -> ReadVariableOp:value:0 is not found.; nothing was published. HINT: its "
        "control flow v2 conditionals (batch_normalization/cond, batch_normalization/cond_1, dropout/cond) "
        "are marked not to be lowered to Switch/Merge (_lower_using_switch_merge), and the "
        "variables their branches read cannot be frozen; build the graph after "
        "tf.compat.v1.disable_control_flow_v2()."
    )
    assert not (tmp_path / "f.pb").exists()


@contextlib.contextmanager
def live_session(version: str = "v2", *, required: bool = False):
    graph, _, _ = build_graph(version, required=required)
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        yield session


@pytest.mark.parametrize(
    "constants, message",
    [
        ({"is_trainin": False},
         "freeze.constants: 'is_trainin' is not a node of the session's graph. "
         "Closest: 'is_training'"),
        ({"output/predict": 1.0},
         r"freeze.constants: 'output/predict' of the session's graph is not a placeholder "
         r"\(its op is Identity\); only placeholders can be bound to a value."),
        ({"is_training": 1},
         r"freeze.constants: cannot bind 'is_training' \(PlaceholderWithDefault bool\) of the "
         r"session's graph: 1 is not true or false."),
        ({"inputs/X": 1.0},
         r"cannot bind 'inputs/X' \(Placeholder float32\) .*: its shape \(None, 3\) is not fully known"),
    ],
)
def test_a_constant_that_does_not_fit_is_refused_naming_the_node(tmp_path, constants, message):
    config = FreezeConfig(output=str(tmp_path / "f.pb"), input_names=("inputs/X",),
                          output_names=("output/predict",), constants=constants)
    with live_session() as session, pytest.raises(FreezeError, match=message):
        freeze_session(session, config)
    assert not list(tmp_path.iterdir())


def test_a_required_bool_placeholder_neither_input_nor_bound_is_refused(tmp_path):
    config = FreezeConfig(output=str(tmp_path / "f.pb"), input_names=("inputs/X",),
                          output_names=("output/predict",))
    with live_session(required=True) as session, pytest.raises(
        FreezeError,
        match=r"Placeholder 'is_training' \(bool\) of the session's graph feeds the outputs but is "
        r"neither an input nor bound. HINT: bind it with freeze.constants \(e.g. "
        r"\{is_training: false\}, or --constant is_training=false\)",
    ):
        freeze_session(session, config)


def test_a_required_bool_placeholder_can_be_bound(tmp_path):
    config = FreezeConfig(output=str(tmp_path / "f.pb"), input_names=("inputs/X",),
                          output_names=("output/predict",), constants={"is_training": False})
    with live_session("v1", required=True) as session:
        expected = session.run("output/predict:0", {"inputs/X:0": X, "is_training:0": False})
        freeze_session(session, config)
    assert_inference_only(tmp_path / "f.pb", expected)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_an_unbound_switch_with_a_default_is_warned_of_and_kept(tmp_path, caplog, version):
    config = FreezeConfig(output=str(tmp_path / "f.pb"), input_names=("inputs/X",),
                          output_names=("output/predict",))
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"), live_session(version) as session:
        assert freeze_session(session, config).max_abs_diff == 0.0
    assert any(
        "is_training (bool, with a default) of the session's graph stays in the frozen graph" in m
        and "HINT: bind it with freeze.constants: {is_training: false}." in m
        for m in caplog.messages
    ), caplog.messages
    assert "Switch" in {n.op for n in read_graph_def(str(tmp_path / "f.pb")).node}


def test_freeze_meta_refuses_to_make_a_required_bool_placeholder_an_input(tmp_path, capsys):
    meta = save_untrained(tmp_path, "v1", required=True)
    status, lines = freeze_cli(
        capsys, "--meta", meta, "-o", str(tmp_path / "f.pb"), "--output-names", "output/predict"
    )
    assert status == 2
    assert lines == [
        f"tfcheckpointer: error: Placeholder 'is_training' (bool) of {meta} feeds the "
        "outputs but is neither an input nor bound. HINT: bind it with freeze.constants (e.g. "
        "{is_training: false}, or --constant is_training=false), or list it in input_names to "
        "keep it an input."
    ]


@pytest.mark.parametrize(
    "constant, message",
    [
        ("is_training", "--constant: expected NAME=VALUE, got 'is_training' HINT: e.g. "
         "--constant is_training=false"),
        ("is_training=[", "--constant: cannot read the value '[' as YAML"),
        ("is_training=maybe", "freeze.constants.is_training: expected a boolean or a number, "
         "got 'maybe' (str)"),
    ],
)
def test_a_bad_constant_option_is_one_line_before_any_work(tmp_path, capsys, constant, message):
    status, lines = freeze_cli(
        capsys, "--meta", str(tmp_path / "absent.meta"), "-o", str(tmp_path / "f.pb"),
        "--constant", constant,
    )
    assert status == 2 and len(lines) == 1 and message in lines[0], lines


def test_a_keras_model_refuses_constants(tmp_path):
    from tests.helpers import mlp
    from tfcheckpointer.graph.keras_freeze import freeze_model

    config = FreezeConfig(output=str(tmp_path / "f.pb"), constants={"is_training": False})
    with pytest.raises(FreezeError, match=r"freeze.constants \(is_training\) binds placeholders of "
                       r"a TF1 graph; Keras model '.*' is frozen with training=False"):
        freeze_model(mlp(), config)
    assert not list(tmp_path.iterdir())


def test_a_while_loop_is_frozen_as_it_is(tmp_path):
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.compat.v1.placeholder(tf.float32, [None, 3], name="inputs/X")
        weights = tf.compat.v1.get_variable("w", [3, 3])
        _, looped = tf.compat.v1.while_loop(
            lambda i, x: i < 3, lambda i, x: (i + 1, tf.matmul(x, weights)), [0, inputs]
        )
        tf.identity(looped, name="output/predict")
    config = FreezeConfig(output=str(tmp_path / "f.pb"), input_names=("inputs/X",),
                          output_names=("output/predict",))
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        assert freeze_session(session, config).max_abs_diff == 0.0
    # Not lowered to a control flow v1 loop, which TFLite cannot convert.
    assert "While" in {n.op for n in read_graph_def(str(tmp_path / "f.pb")).node}


def test_a_bound_placeholder_the_meta_declares_an_input_is_no_input(tmp_path):
    import json

    from tfcheckpointer.graph.session_freeze import freeze_meta_graph

    meta = save_untrained(tmp_path, "v1", declared=True)
    config = FreezeConfig(output=str(tmp_path / "f.pb"), output_names=("output/predict",),
                          constants={"is_training": False})
    freeze_meta_graph(meta, config)
    sidecar = json.loads((tmp_path / "f.pb.json").read_text())
    assert [i["name"] for i in sidecar["inputs"]] == ["inputs/X"]
