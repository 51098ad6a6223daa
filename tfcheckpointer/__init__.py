"""tfcheckpointer: TF1 Saver checkpoints and verified frozen graphs from Keras training.

Importing the package is quick: TensorFlow and Keras load when a name that
needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from tfcheckpointer.errors import (
    BackendError,
    CheckpointError,
    ConfigError,
    FreezeError,
    KeyCollisionError,
    RestoreMismatchError,
    TfCheckpointerError,
    VerificationError,
)

__version__ = "0.1.0"

_LAZY = {
    "CheckpointCallback": "tfcheckpointer.callback",
    "CheckpointManager": "tfcheckpointer.manager",
    "CheckpointSessionHook": "tfcheckpointer.hook",
    "freeze_model": "tfcheckpointer.freeze",
    "load_config": "tfcheckpointer.config",
    "parse_config": "tfcheckpointer.config",
}

__all__ = [
    "BackendError",
    "CheckpointError",
    "ConfigError",
    "FreezeError",
    "KeyCollisionError",
    "RestoreMismatchError",
    "TfCheckpointerError",
    "VerificationError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tfcheckpointer' has no attribute {name!r}")
