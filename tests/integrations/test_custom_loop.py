"""`Checkpointer`: a GradientTape loop checkpointed, resumed and frozen like `fit` with the callback."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import rows, steps_on_disk
from tfcheckpointer import Checkpointer, ConfigError
from tfcheckpointer.errors import CheckpointError

X, Y = rows()


def build():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    return model, keras.optimizers.Adam(0.01)


def train(model, optimizer, checkpointer, steps: int) -> None:
    for index in range(steps):
        x, y = X[index * 8:(index + 1) * 8], Y[index * 8:(index + 1) * 8]
        with tf.GradientTape() as tape:
            loss = keras.ops.mean((model(x, training=True) - y) ** 2)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        checkpointer.after_step()


def test_saves_every_n_steps_and_the_final_step(tmp_path):
    model, optimizer = build()
    with Checkpointer(model, optimizer, directory=str(tmp_path), every_n_steps=2) as checkpointer:
        train(model, optimizer, checkpointer, 5)
    assert steps_on_disk(tmp_path) == [2, 4, 5]
    assert (tmp_path / "model.ckpt-5.meta").exists()


def test_restore_resumes_the_weights_and_the_step(tmp_path):
    model, optimizer = build()
    with Checkpointer(model, optimizer, directory=str(tmp_path), every_n_steps=2) as checkpointer:
        train(model, optimizer, checkpointer, 4)
    fresh, fresh_optimizer = build()
    checkpointer = Checkpointer(fresh, fresh_optimizer, directory=str(tmp_path), every_n_steps=2)
    assert checkpointer.restore() == 4
    checkpointer.callback.manager.close()
    np.testing.assert_array_equal(fresh(X[:5]).numpy(), model(X[:5]).numpy())


def test_end_writes_the_frozen_graph(tmp_path):
    model, optimizer = build()
    freeze = {"output": str(tmp_path / "frozen.pb")}
    with Checkpointer(model, optimizer, directory=str(tmp_path / "ckpt"), every_n_steps=2,
                      freeze=freeze) as checkpointer:
        train(model, optimizer, checkpointer, 3)
    assert checkpointer.frozen.max_abs_diff == 0.0
    assert checkpointer.frozen.path == str(tmp_path / "frozen.pb")


def test_an_error_in_the_loop_saves_nothing_more_and_frees_the_directory(tmp_path):
    model, optimizer = build()
    with pytest.raises(RuntimeError, match="data ran out"):
        with Checkpointer(model, optimizer, directory=str(tmp_path), every_n_steps=2) as checkpointer:
            train(model, optimizer, checkpointer, 3)
            raise RuntimeError("data ran out")
    assert steps_on_disk(tmp_path) == [2]
    fresh, fresh_optimizer = build()
    with Checkpointer(fresh, fresh_optimizer, directory=str(tmp_path), every_n_steps=2) as again:
        assert again.step == 2


def test_a_config_mapping_is_the_yaml_shape(tmp_path):
    model, optimizer = build()
    config = {"checkpoint": {"directory": str(tmp_path), "every_n_steps": 3}}
    with Checkpointer(model, optimizer, config=config) as checkpointer:
        train(model, optimizer, checkpointer, 3)
    assert steps_on_disk(tmp_path) == [3]


def test_config_and_options_together_are_refused(tmp_path):
    model, optimizer = build()
    with pytest.raises(ConfigError, match=r"config: give either config or keyword options, not "
                                          r"both \(got config and directory\)"):
        Checkpointer(model, optimizer, config={"checkpoint": {}}, directory=str(tmp_path))


def test_an_optimizer_other_than_the_compiled_one_is_refused(tmp_path):
    model, optimizer = build()
    model.compile(keras.optimizers.SGD(), "mse")
    with pytest.raises(ConfigError, match="optimizer: is not the model's compiled optimizer"):
        Checkpointer(model, optimizer, directory=str(tmp_path), every_n_steps=2)


def test_after_step_before_restore_is_one_clear_error_and_writes_nothing(tmp_path):
    model, optimizer = build()
    checkpointer = Checkpointer(model, optimizer, directory=str(tmp_path), every_n_steps=1)
    with pytest.raises(CheckpointError, match=r"after_step\(\) before restore\(\).*HINT: call "):
        train(model, optimizer, checkpointer, 1)
    assert list(tmp_path.iterdir()) == []
