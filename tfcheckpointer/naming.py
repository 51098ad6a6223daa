"""File-name pieces of the TF1 checkpoint format, in one place."""

from __future__ import annotations

import re

STATE_FILENAME = "checkpoint"
"""The text `CheckpointState` file that `tf.train.latest_checkpoint` reads."""

INDEX_SUFFIX = ".index"
DATA_INFIX = ".data-"
SIDECAR_SUFFIX = ".json"
TEMP_INFIX = ".tfcheckpointer-tmp"
CORRUPT_INFIX = ".corrupt"
LOCK_FILENAME = ".tfcheckpointer.lock"

GLOBAL_STEP_KEY = "global_step"
OPTIMIZER_SCOPE = "optimizer"

META_SUFFIX = ".meta"
"""`<checkpoint prefix>.meta`, where TF1's `Saver.save` puts the MetaGraphDef."""

GRAPH_DEF_FILENAMES = {"pbtxt": "graph.pbtxt", "pb": "graph.pb"}
"""The value-less GraphDef TF1's `CheckpointSaverHook` writes into the checkpoint directory."""

_CHECKPOINT_FILE_TAIL = re.compile(r"\.index|\.meta|\.data-\d{5}-of-\d{5}")


def checkpoint_prefix(directory: str, basename: str, step: int) -> str:
    """`<directory>/<basename>-<step>`, the prefix a Saver writes for `step`."""
    return f"{directory.rstrip('/')}/{basename}-{step}"


def checkpoint_file_step(filename: str, basename: str) -> tuple[int, bool] | None:
    """`(step, is the index)` for a file of checkpoint `<basename>-<step>`, else None."""
    pattern = re.escape(basename) + r"-(\d+)(" + _CHECKPOINT_FILE_TAIL.pattern + ")"
    match = re.fullmatch(pattern, filename)
    return (int(match.group(1)), match.group(2) == INDEX_SUFFIX) if match else None


def is_checkpoint_file(filename: str, prefix_name: str) -> bool:
    """Whether `filename` is one of the files (data, index, meta) of checkpoint `prefix_name`."""
    return filename.startswith(prefix_name) and bool(
        _CHECKPOINT_FILE_TAIL.fullmatch(filename[len(prefix_name) :])
    )
