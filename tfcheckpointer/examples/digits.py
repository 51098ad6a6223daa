"""The example job: a small convnet on scikit-learn's handwritten digits.

The 1,797 8x8 images ship inside scikit-learn, so the job runs offline.
`configs/digits.yaml` names `build_model` and `load_data` as its factories;
`configs/digits_weekly.yaml`, a scheduled retraining job, names `load_week`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfcheckpointer.errors import TfCheckpointerError


def load_data(*, validation_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """`model.fit` arguments: images scaled to [0, 1] as (N, 8, 8, 1), labels 0-9."""
    images, labels = _digits()
    order = np.random.default_rng(seed).permutation(len(labels))
    return _split(images, labels, order, validation_fraction)


def load_week(
    *, week: int, weeks: int = 4, validation_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """One "week" of fresh data for a scheduled retraining job: a slice of the digits.

    The shuffled digits are cut into `weeks` slices; week 1 gets the first,
    week `weeks` the last, and week `weeks + 1` the first again (so a
    scheduler can pass the calendar week). Each week's slice is split into
    its training rows and its own held-out validation rows.

    Returns:
        `model.fit` arguments plus `fingerprint`, naming the slice, which the
        exported version's manifest records.
    """
    if not isinstance(week, int) or isinstance(week, bool) or week < 1:
        raise TfCheckpointerError(f"load_week: week must be an integer >= 1, got {week!r}.")
    images, labels = _digits()
    order = np.random.default_rng(seed).permutation(len(labels))
    part = (week - 1) % weeks
    data = _split(images, labels, np.array_split(order, weeks)[part], validation_fraction)
    data["fingerprint"] = f"digits week {week}: slice {part + 1} of {weeks}, seed {seed}"
    return data


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """All the digits: images scaled to [0, 1] as (N, 8, 8, 1), labels 0-9."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise TfCheckpointerError(
            "The digits example needs scikit-learn. HINT: pip install 'tfcheckpointer[examples]'."
        ) from None

    digits = load_digits()
    return (digits.images / 16.0).astype("float32")[..., np.newaxis], digits.target.astype("int32")


def _split(
    images: np.ndarray, labels: np.ndarray, rows: np.ndarray, validation_fraction: float
) -> dict[str, Any]:
    """fit's `x`, `y` and `validation_data` from `rows`: the first ones train, the rest validate."""
    cut = int(len(rows) * (1 - validation_fraction))
    train, valid = rows[:cut], rows[cut:]
    return {
        "x": images[train],
        "y": labels[train],
        "validation_data": (images[valid], labels[valid]),
    }


def build_model(
    *,
    filters: int = 16,
    dense_units: int = 64,
    dropout: float = 0.25,
    learning_rate: float = 1e-3,
    steps_per_execution: int = 1,
) -> keras.Model:
    """A compiled convnet with batch norm and dropout: 8x8x1 image in, 10 class probabilities out."""
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(filters * 2, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(dense_units, activation="relu"),
            keras.layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="digits_convnet",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model
