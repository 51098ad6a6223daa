"""The callback with Keras 2 models (`tf_keras`, what `TF_USE_LEGACY_KERAS=1` gives `tf.keras`)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fit
from tfcheckpointer import CheckpointCallback

tf_keras = pytest.importorskip("tf_keras", reason="tf_keras is not installed")

X = np.random.default_rng(0).standard_normal((64, 4)).astype("float32")
DATA = (X, X[:, :1])


def build():
    tf_keras.utils.set_random_seed(1)
    model = tf_keras.Sequential(
        [tf_keras.Input((4,)), tf_keras.layers.Dense(8, activation="relu"),
         tf_keras.layers.BatchNormalization(), tf_keras.layers.Dropout(0.1), tf_keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    return model


def test_keys_match_the_keras_3_layout(tmp_path):
    fit(build(), CheckpointCallback(directory=str(tmp_path), every_n_steps=4), DATA)
    keys = {k for k, _ in tf.train.list_variables(str(tmp_path / "model.ckpt-8"))}
    assert {"dense/kernel", "batch_normalization/moving_mean", "dense_1/bias", "global_step",
            "optimizer/dense/kernel/m", "optimizer/dense/kernel/v"} <= keys


def test_resume_restores_weights_and_continues_the_count(tmp_path):
    trained = build()
    fit(trained, CheckpointCallback(directory=str(tmp_path), every_n_steps=4), DATA)
    fresh = build()  # tf_keras numbers this one's layers dense_2, dense_3, ...
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=4)
    callback.set_model(fresh)
    callback.on_train_begin()
    callback.manager.close()
    assert int(fresh.optimizer.iterations.numpy()) == 8
    np.testing.assert_array_equal(fresh.predict(X[:5], verbose=0), trained.predict(X[:5], verbose=0))


def test_frozen_graph_equals_the_model(tmp_path):
    model = build()
    freeze = {"output": str(tmp_path / "f.pb"), "input_names": ["inputs/X"], "output_names": ["output/predict"]}
    fit(model, CheckpointCallback(directory=str(tmp_path / "ckpt"), every_n_steps=4, freeze=freeze), DATA)
    from tfcheckpointer.graph.files import read_graph_def

    with tf.Graph().as_default() as graph:
        (output,) = tf.compat.v1.import_graph_def(
            read_graph_def(str(tmp_path / "f.pb")), return_elements=["output/predict:0"], name=""
        )
    with tf.compat.v1.Session(graph=graph) as session:
        frozen = session.run(output, {"inputs/X:0": X[:7]})
    np.testing.assert_allclose(frozen, model(X[:7], training=False).numpy(), atol=1e-6)


def normalized(adapt: bool):
    tf_keras.utils.set_random_seed(1)
    norm = tf_keras.layers.Normalization()
    model = tf_keras.Sequential([tf_keras.Input((4,)), norm, tf_keras.layers.Dense(1)])
    if adapt:
        norm.adapt(X + 3)
    model.compile("adam", "mse")
    return model


def test_a_resumed_normalization_computes_with_the_restored_mean(tmp_path):
    trained = normalized(adapt=True)
    fit(trained, CheckpointCallback(directory=str(tmp_path), every_n_steps=4), (X + 3, DATA[1]))
    fresh = normalized(adapt=False)
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=4)
    callback.set_model(fresh)
    callback.on_train_begin()
    callback.manager.close()
    np.testing.assert_allclose(fresh(X[:5] + 3).numpy(), trained(X[:5] + 3).numpy(), atol=1e-6)
