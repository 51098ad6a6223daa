"""Tiny models with state a layer derives from its variables, for the restore tests.

`build(kind, adapt=True)` is the model as trained: its derived layer set
from data (inputs with mean about 3). `build(kind)` is the same model as a
new process builds it to restore into: its layer at the initial state
(mean 0), which a restore must replace everywhere it is used.
"""

from __future__ import annotations

import keras
import numpy as np

KINDS = ("normalization", "batch_normalization", "custom")
FREEZE = {"input_names": ["inputs/X"], "output_names": ["output/y"]}


def data(count: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """`count` rows of 4 features with mean about 3, and a target."""
    x = np.random.default_rng(0).standard_normal((count, 4)).astype("float32") + 3
    return x, (x[:, :1] - x[:, 1:2]).astype("float32")


def probe() -> np.ndarray:
    """Fixed inputs on which the trained and the restored models are compared."""
    return np.random.default_rng(5).standard_normal((8, 4)).astype("float32") + 3


@keras.saving.register_keras_serializable("tests")
class Shift(keras.layers.Layer):
    """Subtracts `offset`, a tensor its own load hook derives from the variable `center`."""

    def build(self, input_shape):
        self.center = self.add_weight(
            name="center", shape=(input_shape[-1],), initializer="zeros", trainable=False
        )
        self._derive()

    def _derive(self):
        self.offset = keras.ops.convert_to_tensor(self.center) * 1.0

    def set_center(self, value):
        self.center.assign(value)
        self._derive()

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self._derive()

    def call(self, inputs):
        return inputs - self.offset


def build(kind: str = "normalization", adapt: bool = False):
    """A compiled 4 -> derived layer -> Dense(1) model; `adapt` sets the layer from `data()`."""
    keras.utils.set_random_seed(2)
    layer = {
        "normalization": keras.layers.Normalization,
        "batch_normalization": keras.layers.BatchNormalization,
        "custom": Shift,
    }[kind]()
    model = keras.Sequential([keras.Input((4,)), layer, keras.layers.Dense(1)])
    if adapt and kind == "normalization":
        layer.adapt(data()[0])
    if adapt and kind == "custom":
        layer.set_center(data()[0].mean(axis=0))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    return model
