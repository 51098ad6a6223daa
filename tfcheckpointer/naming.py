"""File-name pieces of the TF1 checkpoint format, in one place."""

from __future__ import annotations

import re

STATE_FILENAME = "checkpoint"
"""The text `CheckpointState` file that `tf.train.latest_checkpoint` reads."""

INDEX_SUFFIX = ".index"
DATA_INFIX = ".data-"
SIDECAR_SUFFIX = ".json"
TEMP_INFIX = ".tfcheckpointer-tmp"

GLOBAL_STEP_KEY = "global_step"
OPTIMIZER_SCOPE = "optimizer"


def checkpoint_prefix(directory: str, basename: str, step: int) -> str:
    """`<directory>/<basename>-<step>`, the prefix a Saver writes for `step`."""
    return f"{directory.rstrip('/')}/{basename}-{step}"


def step_of_index_file(filename: str, basename: str) -> int | None:
    """The step in `<basename>-<step>.index`, or None for any other file name."""
    match = re.fullmatch(re.escape(basename) + r"-(\d+)" + re.escape(INDEX_SUFFIX), filename)
    return int(match.group(1)) if match else None


def is_checkpoint_file(filename: str, prefix_name: str) -> bool:
    """Whether `filename` is one of the files of checkpoint `prefix_name`."""
    return filename == prefix_name + INDEX_SUFFIX or filename.startswith(
        prefix_name + DATA_INFIX
    )
