"""This run's validation data, as the champion gate reads it: batches of (x, y, sample_weight).

It takes what `fit(validation_data=...)` takes, less what cannot be read
twice (once per model) without consuming it: `(x, y)` or
`(x, y, sample_weight)` of arrays (x and y may be lists or dicts of
arrays), or a finite `tf.data.Dataset` whose elements are such batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfcheckpointer.errors import ConfigError

BATCH_SIZE = 256
"""Rows per batch when the validation data is arrays; the figures do not depend on it."""

EXPECTED = "(x, y) or (x, y, sample_weight) arrays, or a finite tf.data.Dataset of such batches"

Batch = tuple[Any, Any, Any]
"""x, y and sample_weight (None when not given) of one batch, as numpy arrays or structures of them."""


@dataclasses.dataclass(frozen=True)
class ValidationData:
    """Validation data the gate can read as often as it needs."""

    data: Any

    def batches(self) -> Iterator[Batch]:
        """The data's batches: slices of `BATCH_SIZE` rows of arrays, or the dataset's elements."""
        if isinstance(self.data, tf.data.Dataset):
            for element in self.data:
                yield keras.utils.unpack_x_y_sample_weight(
                    tf.nest.map_structure(_numpy, element)
                )
            return
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(self.data)
        rows = len(keras.tree.flatten(x)[0])
        for start in range(0, rows, BATCH_SIZE):
            yield tuple(  # type: ignore[misc]
                None if part is None else keras.tree.map_structure(
                    lambda a: a[start:start + BATCH_SIZE], part
                )
                for part in (x, y, sample_weight)
            )


def as_validation_data(data: Any, *, source: str) -> ValidationData:
    """`data` (as `fit(validation_data=...)` takes it) checked for the gate.

    Raises:
        ConfigError: It is none, or not a form the gate can read twice.
    """
    if isinstance(data, tf.data.Dataset):
        if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise _error(
                source, "the validation dataset repeats forever",
                hint="drop .repeat(), or pass .take(N) of it",
            )
        return ValidationData(data)
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple) or len(data) not in (2, 3) or data[1] is None:
        raise _error(
            source,
            f"expected the validation data as {EXPECTED}, got {type(data).__name__}",
        )
    parts = [part for part in data if part is not None]
    if not all(_is_arrays(part) for part in parts):
        raise _error(
            source, f"expected the validation data as {EXPECTED}; it holds something else",
        )
    data = tuple(None if part is None else keras.tree.map_structure(np.asarray, part) for part in data)
    lengths = {len(a) for part in data if part is not None for a in keras.tree.flatten(part)}
    if len(lengths) != 1 or 0 in lengths:
        raise _error(
            source,
            "the validation data's arrays have "
            + ("no rows" if 0 in lengths else f"different numbers of rows {sorted(lengths)}"),
        )
    return ValidationData(data)


def require_validation_data(data: Any, *, source: str) -> ValidationData:
    """`as_validation_data`, with the error for none given."""
    if data is None:
        raise _error(
            source,
            "needs this run's validation data to evaluate the new model and the champion on, "
            "and none was given",
            hint="pass validation_data=(x, y) to CheckpointCallback; in a job file, return "
            "validation_data from the data factory (fit's validation_split is not read)",
        )
    return as_validation_data(data, source=source)


def _is_arrays(part: Any) -> bool:
    try:
        leaves = keras.tree.flatten(part)
    except (TypeError, ValueError):
        return False
    return bool(leaves) and all(isinstance(leaf, (np.ndarray, tf.Tensor)) for leaf in leaves)


def _numpy(value: Any) -> Any:
    return value.numpy() if isinstance(value, tf.Tensor) else value


def _error(source: str, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(message, file=source, key="export.promote_if", hint=hint)
