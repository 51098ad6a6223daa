"""What a checkpoint holds, read without restoring it: the checkpoint half of `inspect`.

No value is read except the `global_step` scalar.

The dict's keys are stable:

    kind             "checkpoint"
    path             PATH as given
    prefix           the checkpoint inspected (for a directory: its newest)
    step             int or null: the `global_step` tensor, else the number
                     ending the prefix (`model.ckpt-100` -> 100)
    step_source      "global_step", "prefix" or null
    variables        [{key, shape, dtype, bytes}], sorted by key; `bytes` is
                     elements x dtype size, null for strings and other
                     variable-size dtypes
    variable_count   int
    total_bytes      the sum of the variables' known `bytes`
    files            [{path, bytes}] of the checkpoint's files on disk
    checkpoints      for a directory, every checkpoint in it as [{prefix, step}]
                     (oldest step first); null when PATH is a prefix
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.bundle import read_step
from tfcheckpointer.checkpoint.directory import CheckpointDirectory
from tfcheckpointer.errors import CheckpointError, first_line
from tfcheckpointer.graph.files import file_size, sniff_graph_file
from tfcheckpointer.graph.locate import newest_in

SUPPORTED = "a checkpoint directory or prefix, a .pb / .pbtxt GraphDef or a .meta MetaGraphDef"
_VARIABLE_SIZE_DTYPES = {tf.string, tf.resource, tf.variant}


def inspect_checkpoint_directory(directory: str) -> dict[str, Any]:
    """The newest checkpoint of `directory`, and the list of all of them."""
    report = inspect_checkpoint(newest_in(directory))
    report["path"] = directory
    report["checkpoints"] = list_checkpoints(directory)
    return report


def list_checkpoints(directory: str) -> list[dict[str, Any]]:
    """`[{prefix, step}]` for every checkpoint (`*.index`) in `directory`, oldest step first."""
    prefixes = reversed(CheckpointDirectory(directory).prefixes())
    return [{"prefix": prefix, "step": naming.step_of_prefix(prefix)} for prefix in prefixes]


def inspect_checkpoint(path: str) -> dict[str, Any]:
    """The variables, step and files of the checkpoint at prefix `path` (or its `.index`)."""
    prefix = path[: -len(naming.INDEX_SUFFIX)] if path.endswith(naming.INDEX_SUFFIX) else path
    index = prefix + naming.INDEX_SUFFIX
    if not tf.io.gfile.exists(index):
        if tf.io.gfile.exists(prefix):
            _refuse_graph_as_checkpoint(prefix)
            raise CheckpointError(
                f"{prefix} is not a checkpoint: there is no {index}. HINT: give {SUPPORTED}."
            )
        raise CheckpointError(f"No such file, directory or checkpoint: {path}")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as error:
        _refuse_graph_as_checkpoint(index)
        raise CheckpointError(
            f"Cannot read checkpoint {prefix}: {first_line(error)} (is {index} truncated?)"
        ) from None
    files = _checkpoint_files(prefix)
    _require_data_files(prefix, files)
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    variables = [_variable(key, shapes[key], dtypes[key]) for key in sorted(shapes)]
    step, source = read_step(prefix, shapes)
    return {
        "kind": "checkpoint",
        "path": path,
        "prefix": prefix,
        "step": step,
        "step_source": source,
        "variables": variables,
        "variable_count": len(variables),
        "total_bytes": sum(v["bytes"] or 0 for v in variables),
        "files": files,
        "checkpoints": None,
    }



def _variable(key: str, shape: list[int], dtype: tf.DType) -> dict[str, Any]:
    count = 1
    for size in shape:
        count *= size
    nbytes = None if dtype in _VARIABLE_SIZE_DTYPES else count * dtype.size
    return {"key": key, "shape": list(shape), "dtype": dtype.name, "bytes": nbytes}



def _checkpoint_files(prefix: str) -> list[dict[str, Any]]:
    directory = os.path.dirname(prefix)
    paths = [
        os.path.join(directory, name)
        for name in sorted(CheckpointDirectory(directory or ".").files_of(prefix))
    ]
    return [{"path": path, "bytes": file_size(path)} for path in paths]


def _require_data_files(prefix: str, files: list[dict[str, Any]]) -> None:
    name = os.path.basename(prefix)
    shards = {}
    for file in files:
        match = naming.data_file_shards(os.path.basename(file["path"]))
        if match and match[0] == name:
            shards[os.path.basename(file["path"])] = match[1]
    if not shards:
        raise CheckpointError(
            f"Checkpoint {prefix} has an index but no {naming.DATA_INFIX}* file; it is incomplete."
        )
    expected = set().union(*(naming.data_filenames(name, n) for n in set(shards.values())))
    missing = sorted(expected - set(shards))
    if missing:
        raise CheckpointError(f"Checkpoint {prefix} is incomplete: {', '.join(missing)} missing.")


def _refuse_graph_as_checkpoint(path: str) -> None:
    """Name what `path` really is when a checkpoint was expected and it is a graph."""
    sniffed = sniff_graph_file(path)
    if sniffed is not None:
        kind, suffix = sniffed
        raise CheckpointError(
            f"{path} is a {kind}, not a checkpoint. HINT: name it *{suffix} to inspect it "
            "as a graph."
        )
