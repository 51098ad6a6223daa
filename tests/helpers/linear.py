"""Job factories for a linear regression whose loss falls every epoch (`tests.helpers.linear:...`).

Its first epoch has the highest training and validation loss, so a
`keep_best` that monitors a loss with `mode: max` finds its best early.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WEIGHTS = np.array([[1.0], [-2.0], [0.5], [3.0]], dtype="float32")


def features(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 4)).astype("float32")


def build_model() -> Any:
    """A compiled 4 -> 1 Dense with SGD: each epoch brings it closer to WEIGHTS."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(1, name="out")])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def load_data() -> dict[str, Any]:
    """fit's arguments: 16 training rows and 8 validation rows."""
    x, valid = features(16, seed=0), features(8, seed=1)
    return {"x": x, "y": x @ WEIGHTS, "validation_data": (valid, valid @ WEIGHTS)}
