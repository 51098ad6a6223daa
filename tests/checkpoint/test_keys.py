"""Checkpoint keys are derived from the model's structure, so they are stable."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.helpers import fit, mlp
from tfcheckpointer import CheckpointCallback
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


@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
def test_loss_scale_optimizer_keys_its_inner_optimizer_as_a_plain_one(policy):
    model = built(mlp())  # compile() wrapped its Adam in a LossScaleOptimizer
    keys = checkpoint_variables(model, include_optimizer=True)
    assert keys["global_step"] is model.optimizer.iterations  # the inner optimizer's counter
    assert {"optimizer/learning_rate", "optimizer/dense/kernel/momentum"} <= set(keys)
    # Only the loss scale's own state: the wrapper's unused iteration/learning_rate are not saved.
    assert sorted(k for k in keys if k.startswith("optimizer/loss_scale/")) == [
        "optimizer/loss_scale/dynamic_scale", "optimizer/loss_scale/step_counter",
    ]
    assert list(keys) == list(checkpoint_variables(built(mlp()), include_optimizer=True))


class Affine(keras.layers.Layer):
    """Weights made with `add_weight` and no name: Keras names them `variable_<n>` per process."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")
        self._offset = self.add_weight(shape=(input_shape[-1],), initializer="zeros")
        self.extra = [self.add_weight(shape=()), self.add_weight(shape=(), name="gain")]

    def call(self, inputs):
        return (inputs * self.scale + self._offset) * self.extra[0] * self.extra[1]


def affine_model():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), Affine(), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    return model


def test_unnamed_weights_are_keyed_by_attribute_else_position_and_named_ones_by_name():
    keys = list(checkpoint_variables(built(affine_model()), include_optimizer=True))
    assert keys[:4] == ["affine/scale", "affine/offset", "affine/variable_2", "affine/gain"]
    assert "optimizer/affine/scale/momentum" in keys


def test_unnamed_weights_keep_their_keys_when_the_model_is_rebuilt(tmp_path, data):
    trained = affine_model()
    fit(trained, CheckpointCallback(directory=str(tmp_path), every_n_steps=4), data)
    fresh = affine_model()
    # Keras numbered the rebuilt weights on (variable_4, ...); the keys stay the same.
    assert [v.path for v in fresh.variables] != [v.path for v in trained.variables]
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=4)
    callback.set_model(fresh)
    callback.on_train_begin()
    callback.manager.close()
    assert list(checkpoint_variables(fresh, include_optimizer=True)) == list(
        checkpoint_variables(trained, include_optimizer=True)
    )
    x = data[0][:5]
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), trained.predict(x, verbose=0))


class TwoAccumulators(keras.optimizers.SGD):
    """An optimizer whose two extra variables have the same name."""

    def build(self, variables):
        super().build(variables)
        self.first = self.add_variable((), name="accumulator")
        self.second = self.add_variable((), name="accumulator")


def test_an_optimizer_collision_hints_at_the_optimizer_not_the_layers():
    model = mlp()
    model.compile(TwoAccumulators(), "mse")
    with pytest.raises(KeyCollisionError, match=r"'optimizer/accumulator' <- .*\n"
                       r"HINT: the TwoAccumulators optimizer's variables .* `include_optimizer: false`"):
        checkpoint_variables(built(model), include_optimizer=True)
    assert "global_step" in checkpoint_variables(model, include_optimizer=False)


class Settings(keras.layers.Layer):
    def build(self, input_shape):
        self.rate = self.add_weight(shape=(), name="learning_rate")

    def call(self, inputs):
        return inputs * self.rate


def test_a_layer_named_like_the_optimizer_scope_hints_at_renaming_it():
    model = keras.Sequential([keras.Input((3,)), Settings(name="optimizer"), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with pytest.raises(KeyCollisionError, match="HINT: rename the layer named 'optimizer'"):
        checkpoint_variables(built(model), include_optimizer=True)
