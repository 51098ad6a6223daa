"""Small TensorFlow helpers every layer above shares."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import tensorflow as tf
from tensorflow.python.util import deprecation


@contextlib.contextmanager
def quiet_tensorflow() -> Iterator[None]:
    """Silence TF1 deprecation notices and the "Restoring parameters" lines a Saver logs."""
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        with deprecation.silence():
            yield
    finally:
        tf_logger.setLevel(level)


def tf_variable(variable: Any) -> tf.Variable:
    """The `tf.Variable` behind a Keras variable, or the variable itself."""
    return variable if isinstance(variable, tf.Variable) else variable.value


def op_error_text(error: BaseException) -> str:
    """An `OpError`'s own message (without TensorFlow's traceback), else the error's text."""
    return getattr(error, "message", None) or str(error)
