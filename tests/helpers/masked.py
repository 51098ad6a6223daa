"""Job factories for a model that rightly outputs NaN on all-padding rows.

`Embedding(mask_zero=True)` then a masked mean: a row of only zeros (padding)
has nothing to average, so the live model gives NaN for it. The random probe
batch (ints 0 and 1) is full of such rows; real data has none. Referenced by
YAML jobs in the tests as `tests.helpers.masked:...`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LENGTH = 3


def tokens(count: int, seed: int = 0) -> np.ndarray:
    """`count` sequences of LENGTH token ids 1..9, none of them padding."""
    return np.random.default_rng(seed).integers(1, 10, (count, LENGTH)).astype("int32")


def build_model() -> Any:
    """A compiled Embedding(mask_zero=True) -> masked mean -> Dense(1) model."""
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [
            keras.Input((LENGTH,), dtype="int32", name="tokens"),
            keras.layers.Embedding(10, 2, mask_zero=True),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(1, name="score"),
        ]
    )
    model.compile("sgd", "mse")
    return model


def load_data() -> dict[str, Any]:
    """fit's arguments: 16 training rows and 8 validation rows."""
    x = tokens(16)
    valid = tokens(8, seed=1)
    return {"x": x, "y": x.sum(axis=1, keepdims=True) / 10.0, "validation_data": (valid, valid[:, :1])}


def probe_rows(*, count: int = 3) -> np.ndarray:
    """A `freeze.probe` factory: `count` rows of real tokens."""
    return tokens(count, seed=2)


def load_training_dataset() -> Any:
    """fit's data as a `tf.data.Dataset` of (x, y) batches, without validation data."""
    import tensorflow as tf

    data = load_data()
    return tf.data.Dataset.from_tensor_slices((data["x"], data["y"])).batch(8)
