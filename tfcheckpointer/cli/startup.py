"""Starting TensorFlow for a command: its own start-up lines hidden unless asked for."""

from __future__ import annotations

import os
import sys
import tempfile

from tfcheckpointer.errors import BackendError, first_line

# TensorFlow's __init__ imports all of Keras (for `keras.src.optimizers`) and swallows an
# ImportError there; commands that only read protobufs block it to start faster.
_KERAS_EAGER_IMPORT = "keras.src.optimizers"


def import_tensorflow(*, verbose: bool, keras: bool = True) -> None:
    """Import TensorFlow with the lines its C++ code prints while loading hidden.

    TensorFlow 2.21 writes its start-up lines (oneDNN, CUDA, absl) straight to
    file descriptor 2 during `import tensorflow` and its device discovery,
    before `TF_CPP_MIN_LOG_LEVEL` applies, so descriptor 2 goes to a temporary
    file for those. They are shown with `verbose`, and when the import fails.
    Later C++ errors still show (`TF_CPP_MIN_LOG_LEVEL` is 2 unless set).
    `keras=False` keeps TensorFlow from importing Keras.
    """
    if "tensorflow" in sys.modules:
        return
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    block_keras = not keras and _KERAS_EAGER_IMPORT not in sys.modules
    if block_keras:
        sys.modules[_KERAS_EAGER_IMPORT] = None  # type: ignore[assignment]
    try:
        if verbose:
            import tensorflow  # noqa: F401
        else:
            _import_tensorflow_silently()
    except ImportError as error:
        raise BackendError(
            f"TensorFlow failed to load: {first_line(error)}. HINT: its own messages are above; "
            "reinstall it with `pip install tensorflow`."
        ) from error
    finally:
        if block_keras and sys.modules.get(_KERAS_EAGER_IMPORT, 0) is None:
            del sys.modules[_KERAS_EAGER_IMPORT]


def _import_tensorflow_silently() -> None:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            # Device discovery logs at ERROR level where there is no GPU ("failed call to
            # cuInit"); done here, it is a start-up line like the others.
            tf.config.list_physical_devices()
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
