"""Shared fixtures: quiet TensorFlow and the tiniest models that show each behaviour."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

from tests.helpers import mlp, rows


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    """64 rows of 4 features and a scalar target."""
    return rows()


@pytest.fixture
def make_mlp():
    return mlp


@pytest.fixture
def policy(request):
    """Keras's global dtype policy set to the parametrized value for one test, then float32 again.

    Use with `@pytest.mark.parametrize("policy", [...], indirect=True)`.
    """
    import keras

    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")
