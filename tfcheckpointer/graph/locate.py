"""What a command-line checkpoint argument names: `latest`, `best`, a directory, a prefix or its `.index`.

Directories are resolved by the one rule of `CheckpointDirectory.candidates`
(the state file's pick among the basename's checkpoints, then the highest
step); a path that is something else (a data shard, a graph file) is named
for what it is.
"""

from __future__ import annotations

import os

import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.directory import CheckpointDirectory
from tfcheckpointer.checkpoint.scores import best_checkpoint
from tfcheckpointer.config.schema import KeepBestConfig
from tfcheckpointer.errors import CheckpointError
from tfcheckpointer.graph.files import sniff_graph_file

LATEST = "latest"
"""`--checkpoint latest`: the newest checkpoint of the default directory."""
BEST = "best"
"""`--checkpoint best` (or `best:DIR`): the checkpoint with the best recorded epoch-end score."""


def resolve_checkpoint(
    checkpoint: str,
    *,
    directory: str | None = None,
    basename: str | None = None,
    keep_best: KeepBestConfig | None = None,
) -> str:
    """The checkpoint prefix that `checkpoint` names.

    Args:
        checkpoint: `latest`, `best` (in `directory`), `best:DIR`, a
            directory (its newest checkpoint), a prefix such as
            `runs/ckpt/model.ckpt-100`, or that prefix's `.index` file.
        directory: Where `latest` and `best` look.
        basename: Only `<basename>-<step>` checkpoints of a directory count
            (another Saver's entry in its state file is ignored); None
            accepts any basename.
        keep_best: The metric and direction `best` ranks by; None: those
            recorded in the directory's `scores.json`.

    Raises:
        CheckpointError: There is no checkpoint there, none with a score for
            `best`, or the path is a graph file or a data shard rather than a
            checkpoint.
    """
    checkpoint = os.fspath(checkpoint)
    if checkpoint == BEST or checkpoint.startswith(BEST + ":"):
        return best_in(checkpoint.partition(":")[2] or directory, basename, keep_best)
    if checkpoint == LATEST:
        if directory is None:
            raise CheckpointError(
                "`--checkpoint latest` needs a checkpoint directory, and none is known here. "
                "HINT: give a checkpoint prefix (model.ckpt-100) or a directory."
            )
        checkpoint = directory
    if tf.io.gfile.isdir(checkpoint):
        return newest_in(checkpoint, basename)
    refuse_data_file(checkpoint)
    if checkpoint.endswith(naming.INDEX_SUFFIX):
        checkpoint = checkpoint[: -len(naming.INDEX_SUFFIX)]
    if tf.io.gfile.exists(checkpoint + naming.INDEX_SUFFIX):
        return checkpoint
    if tf.io.gfile.exists(checkpoint):
        sniffed = sniff_graph_file(checkpoint)
        what = f"a {sniffed[0]}" if sniffed else f"no checkpoint: there is no {checkpoint}.index"
        raise CheckpointError(
            f"{checkpoint} is {what}, not a checkpoint. HINT: give a checkpoint prefix "
            "(model.ckpt-100, the name before .index), its directory or `latest`."
        )
    raise CheckpointError(
        f"No checkpoint at {checkpoint} ({checkpoint}{naming.INDEX_SUFFIX} does not exist). "
        "HINT: give a checkpoint prefix (model.ckpt-100), its directory or `latest`."
    )


def newest_in(directory: str, basename: str | None = None) -> str:
    """The newest checkpoint of `directory`, or a `CheckpointError` saying there is none."""
    latest = CheckpointDirectory(directory, basename).latest()
    if latest is None:
        named = f"{basename}-<step>" if basename else "<basename>-<step>"
        raise CheckpointError(
            f"No checkpoint in directory {directory}: no `{naming.STATE_FILENAME}` state file "
            f"naming one and no {named}{naming.INDEX_SUFFIX} file. HINT: give the directory a "
            "training run writes checkpoints to, or a checkpoint prefix."
        )
    return latest


def best_in(
    directory: str | None, basename: str | None, keep_best: KeepBestConfig | None = None
) -> str:
    """The best-scored checkpoint of `directory`, or a `CheckpointError` saying why there is none."""
    if directory is None:
        raise CheckpointError(
            "`--checkpoint best` needs a checkpoint directory, and none is known here. "
            "HINT: give best:DIR, e.g. best:runs/ckpt."
        )
    prefix, monitor = best_checkpoint(directory, basename, keep_best)
    if prefix is not None:
        return prefix
    how = (
        "scores are recorded in scores.json at each epoch end of a Keras fit() with "
        "checkpoint.keep_best set"
    )
    if monitor is None:
        raise CheckpointError(
            f"No checkpoint in {directory} has a score: there is no {naming.SCORES_FILENAME} "
            f"naming a metric to rank by ({how}). HINT: train with checkpoint.keep_best, or "
            "give --checkpoint latest or a checkpoint prefix."
        )
    raise CheckpointError(
        f"No checkpoint in {directory} has a score for {monitor!r} ({how}, for the "
        "checkpoints saved before it; the metric must be among the epoch's logs). HINT: give "
        "--checkpoint latest or a checkpoint prefix."
    )


def refuse_data_file(path: str) -> None:
    """Raise when `path` is one data shard of a checkpoint rather than the checkpoint."""
    shard_of = naming.data_file_shards(path)
    if shard_of is not None:
        raise CheckpointError(
            f"{path} is one data shard of a checkpoint, not a whole checkpoint. "
            f"HINT: give the checkpoint prefix {shard_of[0]} (or {shard_of[0]}{naming.INDEX_SUFFIX})."
        )
