"""Partitioned TF1 variables: saved, restored and frozen as TF1's own `Saver` does it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import run_in_tf1_session, steps_on_disk
from tfcheckpointer.cli import main
from tfcheckpointer.config import FreezeConfig
from tfcheckpointer.errors import KeyCollisionError, RestoreMismatchError
from tfcheckpointer.graph.session_freeze import freeze_meta_graph
from tfcheckpointer.integrations.session_hook import CheckpointSessionHook

X = np.random.default_rng(0).standard_normal((16, 3)).astype("float32")
Y = X.sum(axis=1, keepdims=True)
STEPS = 4


def build_graph(partitions: int = 2):
    """A 3 -> 4 -> 1 TF1 network whose hidden layer is split into `partitions` slices, with Adam."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)
        global_step = tf.compat.v1.train.get_or_create_global_step()
        inputs = tf.compat.v1.placeholder(tf.float32, [None, 3], name="inputs/X")
        targets = tf.compat.v1.placeholder(tf.float32, [None, 1], name="targets")
        partitioner = tf.compat.v1.fixed_size_partitioner(partitions)
        with tf.compat.v1.variable_scope("hidden", partitioner=partitioner):
            # 3 rows in 2 slices: uneven, [2, 4] and [1, 4].
            kernel = tf.compat.v1.get_variable("kernel", [3, 4])
            zeros = tf.compat.v1.zeros_initializer()
            bias = tf.compat.v1.get_variable("bias", [4], initializer=zeros)
        hidden = tf.nn.relu(tf.matmul(inputs, kernel) + bias)
        with tf.compat.v1.variable_scope("output"):
            weights = tf.compat.v1.get_variable("kernel", [4, 1])
        prediction = tf.identity(tf.matmul(hidden, weights), name="output/predict")
        loss = tf.reduce_mean(tf.square(prediction - targets))
        train_op = tf.compat.v1.train.AdamOptimizer(0.05).minimize(loss, global_step=global_step)
    return types.SimpleNamespace(
        graph=graph, train_op=train_op, inputs=inputs, targets=targets, prediction=prediction,
        kernel=kernel,
    )


FREEZE = {"input_names": ["inputs/X"], "output_names": ["output/predict"]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Four steps under our hook (freezing at the end); the same session saved by a plain Saver."""
    root = tmp_path_factory.mktemp("partitioned")
    net = build_graph()
    hook = CheckpointSessionHook(
        directory=str(root / "ours"), every_n_steps=100,
        freeze={**FREEZE, "output": str(root / "frozen.pb")},
    )
    with net.graph.as_default():
        hook.begin()
        saver = tf.compat.v1.train.Saver()
        initialize = tf.compat.v1.global_variables_initializer()
        net.graph.finalize()
        with tf.compat.v1.Session() as session:
            session.run(initialize)
            hook.after_create_session(session, None)
            for _ in range(STEPS):
                session.run(net.train_op, {net.inputs: X, net.targets: Y})
                hook.after_run(tf.compat.v1.train.SessionRunContext((), session), None)
            expected = session.run(net.prediction, {net.inputs: X})
            hook.end(session)
            saver.save(session, str(root / "saver" / f"model.ckpt-{STEPS}"), write_meta_graph=False,
                       write_state=False)
    return types.SimpleNamespace(
        root=root, hook=hook, expected=expected, prefix=str(root / "ours" / f"model.ckpt-{STEPS}")
    )


def test_each_partitioned_variable_is_one_key_of_its_full_shape(run):
    shapes = dict(tf.train.list_variables(run.prefix))
    assert shapes["hidden/kernel"] == [3, 4] and shapes["hidden/bias"] == [4]
    assert shapes["hidden/kernel/Adam"] == [3, 4]
    assert not [key for key in shapes if "part_" in key]


def test_files_are_byte_identical_to_a_tf1_saver_of_the_same_session(run):
    for suffix in (".index", ".data-00000-of-00001"):
        ours = (run.root / "ours" / f"model.ckpt-{STEPS}{suffix}").read_bytes()
        assert ours == (run.root / "saver" / f"model.ckpt-{STEPS}{suffix}").read_bytes(), suffix


def test_a_plain_saver_restores_them_into_the_same_graph(run):
    net = build_graph()
    with net.graph.as_default(), tf.compat.v1.Session() as session:
        tf.compat.v1.train.Saver().restore(session, run.prefix)
        np.testing.assert_array_equal(session.run(net.prediction, {net.inputs: X}), run.expected)


def test_the_meta_graph_restores_them(run):
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        saver = tf.compat.v1.train.import_meta_graph(run.prefix + ".meta")
        saver.restore(session, run.prefix)
        got = session.run("output/predict:0", {"inputs/X:0": X})
    np.testing.assert_array_equal(got, run.expected)


def read_kernel(session, net) -> np.ndarray:
    return session.run(tf.concat(net.kernel._get_variable_list(), axis=0))


@pytest.mark.parametrize("partitions", [2, 3])
def test_our_hook_resumes_from_them_into_any_partitioning(run, tmp_path, partitions):
    shutil.copytree(run.root / "ours", tmp_path / "ours")
    net = build_graph(partitions)
    hook = CheckpointSessionHook(directory=str(tmp_path / "ours"), every_n_steps=100)
    with net.graph.as_default():
        hook.begin()
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            hook.after_create_session(session, None)
            stored = tf.train.load_checkpoint(run.prefix).get_tensor("hidden/kernel")
            np.testing.assert_array_equal(read_kernel(session, net), stored)
            predicted = session.run(net.prediction, {net.inputs: X})
            np.testing.assert_array_equal(predicted, run.expected)
            session.run(net.train_op, {net.inputs: X, net.targets: Y})
            hook.after_run(tf.compat.v1.train.SessionRunContext((), session), None)
            hook.end(session)
    assert steps_on_disk(tmp_path / "ours") == [STEPS, STEPS + 1]


def test_the_frozen_graph_at_train_end_equals_the_session(run):
    assert run.hook.frozen.max_abs_diff == 0.0
    (got,) = run_in_tf1_session(run.root / "frozen.pb", {"inputs/X": X}, ["output/predict"])
    np.testing.assert_array_equal(got, run.expected)


def test_freeze_meta_equals_the_session(run, tmp_path, capsys):
    output = tmp_path / "frozen.pb"
    argv = ["freeze", "--meta", run.prefix + ".meta", "-o", str(output),
            "--input-names", "inputs/X", "--output-names", "output/predict"]
    assert main(argv) == 0, capsys.readouterr().err
    (got,) = run_in_tf1_session(output, {"inputs/X": X}, ["output/predict"])
    np.testing.assert_array_equal(got, run.expected)
    assert json.loads((tmp_path / "frozen.pb.json").read_text())["max_abs_diff"] == 0.0


def test_tensorflows_freeze_graph_tool_freezes_them_from_the_meta_graph(run, tmp_path):
    output = tmp_path / "frozen.pb"
    done = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.freeze_graph",
         f"--input_meta_graph={run.prefix}.meta", f"--input_checkpoint={run.prefix}",
         "--output_node_names=output/predict", f"--output_graph={output}", "--input_binary=true"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (got,) = run_in_tf1_session(output, {"inputs/X": X}, ["output/predict"])
    np.testing.assert_array_equal(got, run.expected)


def test_freeze_meta_restores_a_checkpoint_without_optimizer_state(run, tmp_path):
    net = build_graph()
    with net.graph.as_default(), tf.compat.v1.Session() as session:
        tf.compat.v1.train.Saver().restore(session, run.prefix)
        model = [v for v in tf.compat.v1.global_variables() if "Adam" not in v.op.name]
        prefix = str(tmp_path / "model.ckpt-4")
        tf.compat.v1.train.Saver(model).save(session, prefix, write_meta_graph=False)
    assert "hidden/kernel/Adam" not in dict(tf.train.list_variables(prefix))
    config = FreezeConfig(output=str(tmp_path / "frozen.pb"), **FREEZE)
    frozen = freeze_meta_graph(run.prefix + ".meta", config, checkpoint=prefix)
    assert frozen.frozen.max_abs_diff == 0.0
    (got,) = run_in_tf1_session(tmp_path / "frozen.pb", {"inputs/X": X}, ["output/predict"])
    np.testing.assert_array_equal(got, run.expected)


def test_freeze_meta_refuses_a_checkpoint_of_another_full_shape(run, tmp_path):
    reader = tf.train.load_checkpoint(run.prefix)
    tensors = {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}
    tensors["hidden/kernel"] = np.zeros((3, 5), "float32")
    prefix = str(tmp_path / "model.ckpt-4")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(tensors),
                      shape_and_slices=[""] * len(tensors), tensors=list(tensors.values()))
    config = FreezeConfig(output=str(tmp_path / "frozen.pb"), **FREEZE)
    with pytest.raises(RestoreMismatchError, match=r"Shape of hidden/kernel: model \[3, 4\], "
                       r"checkpoint \[3, 5\]"):
        freeze_meta_graph(run.prefix + ".meta", config, checkpoint=prefix)
    assert not (tmp_path / "frozen.pb").exists()


def test_inspect_lists_one_key_with_the_full_shape(run, capsys):
    assert main(["inspect", "--json", run.prefix]) == 0
    variables = {v["key"]: v for v in json.loads(capsys.readouterr().out)["variables"]}
    assert variables["hidden/kernel"]["shape"] == [3, 4]
    assert variables["hidden/kernel"]["bytes"] == 3 * 4 * 4
    assert not [key for key in variables if "part_" in key]


def test_async_saves_write_slices_too(run, tmp_path):
    net = build_graph()
    hook = CheckpointSessionHook(directory=str(tmp_path), every_n_steps=2, async_save=True)
    with net.graph.as_default():
        stop = tf.compat.v1.train.StopAtStepHook(last_step=STEPS)
        with tf.compat.v1.train.MonitoredTrainingSession(hooks=[hook, stop]) as session:
            while not session.should_stop():
                session.run(net.train_op, {net.inputs: X, net.targets: Y})
    assert steps_on_disk(tmp_path) == [2, STEPS]
    for suffix in (".index", ".data-00000-of-00001"):
        ours = (tmp_path / f"model.ckpt-{STEPS}{suffix}").read_bytes()
        assert ours == (run.root / "saver" / f"model.ckpt-{STEPS}{suffix}").read_bytes(), suffix


def test_a_variable_named_like_a_partitioned_one_is_refused_at_begin(tmp_path):
    hook = CheckpointSessionHook(directory=str(tmp_path / "ours"), every_n_steps=1)
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)  # another test may have enabled op determinism
        tf.compat.v1.train.get_or_create_global_step()
        partitioner = tf.compat.v1.fixed_size_partitioner(2)
        with tf.compat.v1.variable_scope("hidden", partitioner=partitioner):
            tf.compat.v1.get_variable("kernel", [4])
        tf.Variable(1.0, name="hidden/kernel")
        with pytest.raises(KeyCollisionError, match=r"'hidden/kernel' <- hidden/kernel, "
                           r"hidden/kernel/part_0, hidden/kernel/part_1\n"):
            hook.begin()
    assert not (tmp_path / "ours").exists()
