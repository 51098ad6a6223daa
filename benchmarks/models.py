"""The models and data the sections train, and the callback wrapper that times a hook.

Imported by child processes only (it imports Keras).
"""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

def dense_stack(spec: dict[str, Any]) -> keras.Model:
    """A compiled Sequential stack of `spec["layers"]` Dense(`spec["units"]`) with Adam."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((spec["inputs"],))]
        + [keras.layers.Dense(spec["units"], name=f"dense_{i}") for i in range(spec["layers"])]
    )
    model.compile(keras.optimizers.Adam(1e-4), "mse")
    return model


def data(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """One epoch of `spec["steps"]` batches."""
    rng = np.random.default_rng(0)
    rows = spec["steps"] * spec["batch"]
    x = rng.standard_normal((rows, spec["inputs"]), dtype=np.float32)
    y = rng.standard_normal((rows, spec["units"]), dtype=np.float32)
    return x, y


def warm_up(model: keras.Model, x: np.ndarray, y: np.ndarray, batch: int) -> None:
    """Trace the train step and build the optimizer, then set the step back to 0.

    With the step at 0 again, every competitor saves after the same batches
    (`(batch + 1) % every == 0`), whether it counts batches or optimizer steps.
    """
    model.fit(x[: 3 * batch], y[: 3 * batch], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    model.optimizer.iterations.assign(0)


class TimedCallback(keras.callbacks.Callback):
    """Forwards every hook to `inner` and times its `on_train_batch_end` and `on_train_end`.

    `batch_ends` are the times each `on_train_batch_end` returned: their
    differences are the wall time of each step, the saver's hook included.
    """

    def __init__(self, inner: keras.callbacks.Callback):
        super().__init__()
        self.inner = inner
        self.batch_seconds: list[float] = []
        self.batch_ends: list[float] = []
        self.end_seconds = 0.0

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        super().set_params(params)
        self.inner.set_params(params)

    def on_train_begin(self, logs: Any = None) -> None:
        self.inner.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.inner.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        self.inner.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        start = time.perf_counter()
        self.inner.on_train_batch_end(batch, logs)
        end = time.perf_counter()
        self.batch_seconds.append(end - start)
        self.batch_ends.append(end)

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.inner.on_epoch_end(epoch, logs)

    def on_train_end(self, logs: Any = None) -> None:
        start = time.perf_counter()
        self.inner.on_train_end(logs)
        self.end_seconds = time.perf_counter() - start
