"""Shared fixtures: quiet TensorFlow and the tiniest models that show each behaviour."""

from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def _restore_package_logger():
    """Put the `tfcheckpointer` logger back as it was after each test.

    In-process `main(["train", ...])` calls lower its level to INFO and add a
    stderr handler; a later test that counts warnings (caplog) would then see
    the INFO records too, so the outcome would depend on the order of tests.
    """
    logger = logging.getLogger("tfcheckpointer")
    level, handlers = logger.level, list(logger.handlers)
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
