"""Shared fixtures: quiet TensorFlow and the tiniest models that show each behaviour."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    """64 rows of 4 features and a scalar target."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype("float32")
    return x, (x.sum(axis=1, keepdims=True) > 0).astype("float32")


def mlp(*, steps_per_execution: int = 1, seed: int = 1):
    """A compiled 4 -> 8 -> 1 MLP with batch norm and dropout."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((4,), name="features"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", "mse", steps_per_execution=steps_per_execution)
    return model


def convnet():
    """A compiled 6x6x2 -> 3-class convnet with batch norm and dropout."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def two_in_two_out():
    """A compiled functional model: inputs `image` (5) and `meta` (2), dict outputs `score`, `label`."""
    import keras

    keras.utils.set_random_seed(4)
    image = keras.Input((5,), name="image")
    meta = keras.Input((2,), name="meta")
    hidden = keras.layers.Dense(6, activation="tanh")(keras.layers.Concatenate()([image, meta]))
    outputs = {
        "score": keras.layers.Dense(1, name="score")(hidden),
        "label": keras.layers.Dense(3, activation="softmax", name="label")(hidden),
    }
    model = keras.Model({"image": image, "meta": meta}, outputs)
    model.compile("adam", {"score": "mse", "label": "sparse_categorical_crossentropy"})
    return model


@pytest.fixture
def make_mlp():
    return mlp
