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
