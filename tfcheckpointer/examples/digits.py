"""The example job: a small convnet on scikit-learn's handwritten digits.

The 1,797 8x8 images ship inside scikit-learn, so the job runs offline.
`configs/digits.yaml` names these two functions as its factories.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tfcheckpointer.errors import TfCheckpointerError


def load_data(*, validation_fraction: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """`model.fit` arguments: images scaled to [0, 1] as (N, 8, 8, 1), labels 0-9."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise TfCheckpointerError(
            "The digits example needs scikit-learn. HINT: pip install 'tfcheckpointer[examples]'."
        ) from None

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., np.newaxis]
    labels = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(len(labels) * (1 - validation_fraction))
    train, valid = order[:cut], order[cut:]
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
