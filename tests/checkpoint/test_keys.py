"""Checkpoint keys are derived from the model's structure, so they are stable."""

from __future__ import annotations

import keras
import pytest

from tests.helpers import mlp
from tfcheckpointer.errors import KeyCollisionError
from tfcheckpointer.checkpoint.keys import checkpoint_variables, to_snake_case


def built(model):
    model.optimizer.build(model.trainable_variables)
    return model


def test_keys_are_readable_tf1_style_names():
    keys = list(checkpoint_variables(built(mlp()), include_optimizer=True))
    assert keys[:2] == ["dense/kernel", "dense/bias"]
    assert "batch_normalization/moving_mean" in keys
    assert "dense_1/kernel" in keys
    assert "global_step" in keys
    assert "optimizer/dense_1/kernel/momentum" in keys
    assert "optimizer/dense_1/kernel/velocity" in keys


def test_same_model_built_twice_in_one_process_gets_the_same_keys():
    first = built(mlp())
    second = built(mlp())
    # Keras itself numbers the second model's layers and optimizer differently ...
    assert [v.path for v in first.variables] != [v.path for v in second.variables]
    # ... but the checkpoint keys are the same.
    assert list(checkpoint_variables(first, include_optimizer=True)) == list(
        checkpoint_variables(second, include_optimizer=True)
    )


def test_without_optimizer_only_the_step_is_kept():
    keys = checkpoint_variables(built(mlp()), include_optimizer=False)
    assert not [k for k in keys if k.startswith("optimizer/")]
    assert "global_step" in keys


def test_user_chosen_layer_names_are_kept():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, name="encoder"), keras.layers.Dense(1, name="head")]
    )
    model.compile("sgd", "mse")
    assert list(checkpoint_variables(built(model), include_optimizer=False)) == [
        "encoder/kernel", "encoder/bias", "head/kernel", "head/bias", "global_step",
    ]


def test_nested_layers_are_keyed_by_their_path():
    inputs = keras.Input((3, 2))
    outputs = keras.layers.Dense(1)(keras.layers.LSTM(4)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    keys = checkpoint_variables(built(model), include_optimizer=True)
    assert "lstm/lstm_cell/kernel" in keys
    assert "optimizer/lstm/lstm_cell/recurrent_kernel/momentum" in keys


def test_colliding_names_are_refused():
    class Projection(keras.layers.Dense):
        pass

    # The user named a Projection "dense"; the auto-named Dense beside it is "dense" too.
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2), Projection(1, name="dense")]
    )
    model.compile("sgd", "mse")
    with pytest.raises(KeyCollisionError, match=r"'dense/kernel' <- "):
        checkpoint_variables(built(model), include_optimizer=False)


@pytest.mark.parametrize(
    "name, snake",
    [("Dense", "dense"), ("BatchNormalization", "batch_normalization"), ("Conv2D", "conv2d"),
     ("LSTMCell", "lstm_cell")],
)
def test_snake_case_matches_keras(name, snake):
    assert to_snake_case(name) == snake
