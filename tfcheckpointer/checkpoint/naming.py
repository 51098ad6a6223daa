"""File-name pieces of the TF1 checkpoint format, and the patterns that read them, in one place."""

from __future__ import annotations

import re

STATE_FILENAME = "checkpoint"
"""The text `CheckpointState` file that `tf.train.latest_checkpoint` reads."""

INDEX_SUFFIX = ".index"
DATA_INFIX = ".data-"
META_SUFFIX = ".meta"
"""`<checkpoint prefix>.meta`, where TF1's `Saver.save` puts the MetaGraphDef."""
SIDECAR_SUFFIX = ".json"
SCORES_FILENAME = "scores.json"
"""The checkpoints' epoch-end metrics that `checkpoint.keep_best` ranks them by."""
TEMP_INFIX = ".tfcheckpointer-tmp"
SPARE_SUFFIX = ".tfcheckpointer-spare"
"""`<basename>.tfcheckpointer-spare`: the data file of the checkpoint retention deleted last,
kept until the next save writes (`checkpoint.spare_data_file`)."""
CORRUPT_INFIX = ".corrupt"
SET_ASIDE_DIRECTORY = "set-aside-{time}"
"""Where `checkpoint.on_existing: set_aside` moves an earlier run's checkpoints."""
LOCK_FILENAME = ".tfcheckpointer.lock"

GLOBAL_STEP_KEY = "global_step"
OPTIMIZER_SCOPE = "optimizer"

GRAPH_DEF_FILENAMES = {"pbtxt": "graph.pbtxt", "pb": "graph.pb"}
"""The value-less GraphDef TF1's `CheckpointSaverHook` writes into the checkpoint directory."""

_CHECKPOINT_FILE_TAIL = re.compile(r"\.index|\.meta|\.data-\d{5}-of-\d{5}")
_PREFIX_STEP = re.compile(r"-(\d+)$")
_DATA_FILE = re.compile(r"(?P<prefix>.+)\.data-(?P<shard>\d+)-of-(?P<shards>\d+)")
_INDEX_FILE = re.compile(r"(?P<basename>.+)-(?P<step>\d+)" + re.escape(INDEX_SUFFIX))


def checkpoint_name(basename: str, step: int) -> str:
    """`<basename>-<step>`: a checkpoint's prefix without its directory."""
    return f"{basename}-{step}"


def checkpoint_prefix(directory: str, basename: str, step: int) -> str:
    """`<directory>/<basename>-<step>`, the prefix a Saver writes for `step`."""
    return f"{directory.rstrip('/')}/{checkpoint_name(basename, step)}"


def checkpoint_file_step(filename: str, basename: str) -> tuple[int, bool] | None:
    """`(step, is the index)` for a file of checkpoint `<basename>-<step>`, else None."""
    pattern = re.escape(basename) + r"-(\d+)(" + _CHECKPOINT_FILE_TAIL.pattern + ")"
    match = re.fullmatch(pattern, filename)
    return (int(match.group(1)), match.group(2) == INDEX_SUFFIX) if match else None


def index_file_checkpoint(filename: str) -> tuple[str, int] | None:
    """`(basename, step)` for an index file `<basename>-<step>.index`, whatever the basename."""
    match = _INDEX_FILE.fullmatch(filename)
    return (match.group("basename"), int(match.group("step"))) if match else None


def is_checkpoint_file(filename: str, prefix_name: str) -> bool:
    """Whether `filename` is one of the files (data, index, meta) of checkpoint `prefix_name`."""
    return filename.startswith(prefix_name) and bool(
        _CHECKPOINT_FILE_TAIL.fullmatch(filename[len(prefix_name) :])
    )


def step_of_prefix(prefix: str) -> int | None:
    """The number ending a prefix (`model.ckpt-100` -> 100), or None."""
    match = _PREFIX_STEP.search(prefix)
    return int(match.group(1)) if match else None


def data_file_shards(filename: str) -> tuple[str, int] | None:
    """`(prefix, shard count)` of a data file `<prefix>.data-<i>-of-<n>`, else None."""
    match = _DATA_FILE.fullmatch(filename)
    return (match.group("prefix"), int(match.group("shards"))) if match else None


def data_filenames(prefix_name: str, shards: int) -> set[str]:
    """The data files a checkpoint of `shards` shards has."""
    return {f"{prefix_name}{DATA_INFIX}{i:05d}-of-{shards:05d}" for i in range(shards)}
