"""Job factories for a scheduled retraining: a softmax classifier, new data each week (`tests.helpers.weekly:...`).

Week `w` draws fresh rows (training and validation) of one rule: class 1
when the first two features sum above 0. With `shuffled=True` the training
labels are permuted, which makes a deliberately worse model.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rows(week: int, count: int, *, features: int = 4, validation: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 * validation + week)
    x = rng.standard_normal((count, features)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int64")


def build_model(features: int = 4) -> Any:
    """A compiled `features` -> 2 softmax layer (Adam, sparse cross-entropy, accuracy)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((features,), name="features"), keras.layers.Dense(2, activation="softmax", name="out")]
    )
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def load_week(
    week: int, shuffled: bool = False, features: int = 4, validation: bool = True
) -> dict[str, Any]:
    """fit's data for `week`: 128 training rows, 64 validation rows (unless not), a fingerprint."""
    x, y = rows(week, 128, features=features)
    if shuffled:
        y = np.random.default_rng(week).permutation(y)
    data = {"x": x, "y": y, "fingerprint": f"week-{week}" + ("-shuffled" if shuffled else "")}
    if validation:
        data["validation_data"] = rows(week, 64, features=features, validation=True)
    return data


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Sparse categorical cross-entropy as Keras computes it (probabilities clipped to [1e-7, 1 - 1e-7])."""
    picked = np.clip(probabilities, 1e-7, 1 - 1e-7)[np.arange(len(labels)), labels]
    return float(np.mean(-np.log(picked.astype("float64"))))


def load_week_repeating(week: int, shuffled: bool = False) -> dict[str, Any]:
    """`load_week`, with the validation data as a dataset of 16-row batches that repeats forever.

    `shuffled` shuffles its rows anew on each pass, as `Dataset.shuffle` does by default.
    """
    import tensorflow as tf

    data = load_week(week)
    rows = tf.data.Dataset.from_tensor_slices(data["validation_data"])
    data["validation_data"] = (rows.shuffle(64) if shuffled else rows).batch(16).repeat()
    return data
