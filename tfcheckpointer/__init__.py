"""tfcheckpointer: TF1 Saver checkpoints and verified frozen graphs from Keras training.

Importing the package is quick: TensorFlow and Keras load when a name that
needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:  # what type checkers and editors see; at run time they load lazily
    from tfcheckpointer.checkpoint.listeners import CheckpointListener
    from tfcheckpointer.checkpoint.manager import CheckpointManager
    from tfcheckpointer.config.loading import load_config, parse_config
    from tfcheckpointer.graph.keras_freeze import freeze_model
    from tfcheckpointer.integrations.custom_loop import Checkpointer
    from tfcheckpointer.integrations.keras_callback import CheckpointCallback
    from tfcheckpointer.integrations.session_hook import CheckpointSessionHook

_LAZY = {
    "CheckpointCallback": "tfcheckpointer.integrations.keras_callback",
    "CheckpointListener": "tfcheckpointer.checkpoint.listeners",
    "CheckpointManager": "tfcheckpointer.checkpoint.manager",
    "CheckpointSessionHook": "tfcheckpointer.integrations.session_hook",
    "Checkpointer": "tfcheckpointer.integrations.custom_loop",
    "freeze_model": "tfcheckpointer.graph.keras_freeze",
    "load_config": "tfcheckpointer.config.loading",
    "parse_config": "tfcheckpointer.config.loading",
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
