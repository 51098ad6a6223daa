"""Writing and reading TF1 Saver checkpoints in one directory.

Files go through `tf.io.gfile`, so any filesystem TensorFlow knows (local,
`ram://`, `gs://`, ...) works. The `checkpoint` state file is written with
paths relative to the directory, so a run directory can be moved or copied.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.training import checkpoint_state_pb2

from tfcheckpointer import naming
from tfcheckpointer.errors import CheckpointError, RestoreMismatchError
from tfcheckpointer.policy import CheckpointInfo


@dataclasses.dataclass(frozen=True)
class SavedCheckpoint:
    """What one save wrote."""

    step: int
    prefix: str
    bytes: int
    seconds: float


@contextlib.contextmanager
def _quiet_tf_logging() -> Iterator[None]:
    """Silence the notices an eager `Saver` logs (deprecation, "Restoring parameters")."""
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        tf_logger.setLevel(level)


def make_saver(variables: Mapping[str, Any]) -> tf.compat.v1.train.Saver:
    """A V2-format Saver over `{key: Keras or TF variable}`."""
    var_list = {key: getattr(v, "value", v) for key, v in variables.items()}
    with _quiet_tf_logging():
        return tf.compat.v1.train.Saver(
            var_list=var_list,
            max_to_keep=None,
            save_relative_paths=True,
            write_version=tf.compat.v1.train.SaverDef.V2,
        )


def checkpoint_shapes(prefix: str) -> dict[str, list[int]]:
    """`{key: shape}` of the checkpoint at `prefix`."""
    try:
        return dict(tf.train.list_variables(prefix))
    except (tf.errors.OpError, ValueError) as error:
        raise CheckpointError(f"Cannot read checkpoint {prefix}: {error}") from None


def check_compatible(prefix: str, variables: Mapping[str, Any], *, optional: set[str]) -> None:
    """Raise `RestoreMismatchError` unless `prefix` holds every key of `variables`.

    Keys in `optional` may be absent; keys the checkpoint has beyond them are
    reported as unexpected only when they are outside the optimizer scope
    (a checkpoint written with optimizer state restores into a run without).
    """
    stored = checkpoint_shapes(prefix)
    missing = [k for k in variables if k not in stored and k not in optional]
    unexpected = [
        k for k in stored if k not in variables and not k.startswith(naming.OPTIMIZER_SCOPE + "/")
    ]
    mismatched = {
        k: (tuple(v.shape), tuple(stored[k]))
        for k, v in variables.items()
        if k in stored and list(v.shape) != list(stored[k])
    }
    if missing or unexpected or mismatched:
        raise RestoreMismatchError(
            prefix, missing=missing, unexpected=unexpected, mismatched=mismatched
        )


class CheckpointWriter:
    """Saves, lists, deletes and indexes `<directory>/<basename>-<step>` checkpoints."""

    def __init__(self, directory: str, basename: str):
        self.directory = directory.rstrip("/") or "/"
        self.basename = basename
        self._saver: tf.compat.v1.train.Saver | None = None

    def bind(self, variables: Mapping[str, Any]) -> None:
        """Build the Saver once for the variables every save writes."""
        self._saver = make_saver(variables)

    def prefix(self, step: int) -> str:
        return naming.checkpoint_prefix(self.directory, self.basename, step)

    def save(self, step: int) -> SavedCheckpoint:
        """Write the checkpoint for `step` (the state file is not touched)."""
        if self._saver is None:
            raise CheckpointError("CheckpointWriter.save called before bind().")
        prefix = self.prefix(step)
        start = time.perf_counter()
        try:
            tf.io.gfile.makedirs(self.directory)
            self._saver.save(None, prefix, write_meta_graph=False, write_state=False)
        except (tf.errors.OpError, OSError, ValueError) as error:
            raise CheckpointError(f"Cannot write checkpoint {prefix}: {error}") from error
        seconds = time.perf_counter() - start
        return SavedCheckpoint(step, prefix, self._size(prefix), seconds)

    def restore(self, prefix: str, variables: Mapping[str, Any]) -> None:
        """Assign the checkpoint's values to `variables` (all keys must be stored)."""
        try:
            with _quiet_tf_logging():
                make_saver(variables).restore(None, prefix)
        except (tf.errors.OpError, ValueError) as error:
            raise CheckpointError(f"Cannot restore checkpoint {prefix}: {error}") from None

    def list_checkpoints(self) -> list[CheckpointInfo]:
        """The checkpoints of this basename on disk, oldest step first."""
        if not tf.io.gfile.isdir(self.directory):
            return []
        found = []
        for filename in tf.io.gfile.listdir(self.directory):
            step = naming.step_of_index_file(filename.rstrip("/"), self.basename)
            if step is not None:
                stat = tf.io.gfile.stat(f"{self.directory}/{filename}")
                found.append(CheckpointInfo(step, stat.mtime_nsec / 1e9))
        return sorted(found, key=lambda c: c.step)

    def latest(self) -> str | None:
        """The newest checkpoint: the state file's, or the highest step on disk."""
        state = tf.train.get_checkpoint_state(self.directory)
        if state and state.model_checkpoint_path:
            path = state.model_checkpoint_path
            if tf.io.gfile.exists(path + naming.INDEX_SUFFIX):
                return path
        checkpoints = self.list_checkpoints()
        return self.prefix(checkpoints[-1].step) if checkpoints else None

    def delete(self, step: int) -> None:
        """Remove every file of the checkpoint for `step`."""
        name = f"{self.basename}-{step}"
        for filename in tf.io.gfile.listdir(self.directory):
            if naming.is_checkpoint_file(filename, name):
                tf.io.gfile.remove(f"{self.directory}/{filename}")

    def write_state(self, checkpoints: list[CheckpointInfo], latest: int) -> None:
        """Atomically point the `checkpoint` state file at step `latest`.

        `checkpoints` are all those kept; `latest` goes last, as TF expects.
        """
        checkpoints = sorted(checkpoints, key=lambda c: (c.step == latest, c.step))
        names = [f"{self.basename}-{c.step}" for c in checkpoints]
        state = checkpoint_state_pb2.CheckpointState(
            model_checkpoint_path=f"{self.basename}-{latest}",
            all_model_checkpoint_paths=names,
            all_model_checkpoint_timestamps=[c.timestamp for c in checkpoints],
        )
        path = f"{self.directory}/{naming.STATE_FILENAME}"
        temp = path + naming.TEMP_INFIX
        with tf.io.gfile.GFile(temp, "w") as f:
            f.write(text_format.MessageToString(state))
        tf.io.gfile.rename(temp, path, overwrite=True)

    def _size(self, prefix: str) -> int:
        name = prefix.rsplit("/", 1)[-1]
        return sum(
            tf.io.gfile.stat(f"{self.directory}/{filename}").length
            for filename in tf.io.gfile.listdir(self.directory)
            if naming.is_checkpoint_file(filename, name)
        )
