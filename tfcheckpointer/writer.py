"""Writing and reading TF1 Saver checkpoints in one directory, crash-safely.

A save takes a *snapshot* of the variables (cheap: TensorFlow shares the
buffers and copies on the next write to a variable), writes it with the same
`SaveV2` op, in the same key order, that `tf.compat.v1.train.Saver` uses —
the files are byte-identical to a Saver's — under a temporary prefix, checks
that the result opens and holds every key, and only then renames it into
place, index last. The `checkpoint` state file is replaced atomically
afterwards and always points at a complete checkpoint.

Files go through `tf.io.gfile`, so any filesystem TensorFlow knows (local,
`ram://`, `gs://`, ...) works. The state file holds paths relative to the
directory, so a run directory can be moved or copied.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.training import checkpoint_state_pb2
from tensorflow.python.util import deprecation

from tfcheckpointer import naming
from tfcheckpointer.errors import CheckpointError, RestoreMismatchError
from tfcheckpointer.files import atomic_write
from tfcheckpointer.policy import CheckpointInfo

logger = logging.getLogger("tfcheckpointer")


@dataclasses.dataclass(frozen=True)
class SavedCheckpoint:
    """What one save wrote."""

    step: int
    prefix: str
    bytes: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The values of every saved variable at one instant, in Saver key order."""

    keys: list[str]
    tensors: list[Any]  # eager tensors, or numpy arrays read through a session

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(t.shape)) * tf.as_dtype(t.dtype).size for t in self.tensors)


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


def make_saver(variables: Mapping[str, Any]) -> tf.compat.v1.train.Saver:
    """A V2-format Saver over `{key: Keras or TF variable}`."""
    var_list = {key: tf_variable(v) for key, v in variables.items()}
    with quiet_tensorflow():
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
    except Exception as error:  # the C++ reader maps file damage to many Python types
        raise CheckpointError(f"Cannot read checkpoint {prefix}: {error}") from None


def check_compatible(prefix: str, shapes: Mapping[str, Any], *, optional: set[str]) -> None:
    """Raise `RestoreMismatchError` unless `prefix` holds every key of `shapes`, shaped alike.

    Keys in `optional` may be absent; keys the checkpoint has beyond them are
    reported as unexpected only when they are outside the optimizer scope
    (a checkpoint written with optimizer state restores into a run without).
    """
    stored = checkpoint_shapes(prefix)
    missing = [k for k in shapes if k not in stored and k not in optional]
    unexpected = [
        k for k in stored if k not in shapes and not k.startswith(naming.OPTIMIZER_SCOPE + "/")
    ]
    mismatched = {
        k: (tuple(shape), tuple(stored[k]))
        for k, shape in shapes.items()
        if k in stored and list(shape) != list(stored[k])
    }
    if missing or unexpected or mismatched:
        raise RestoreMismatchError(
            prefix, missing=missing, unexpected=unexpected, mismatched=mismatched
        )


# One small graph per variable layout, to write numpy snapshots where eager
# execution is not available (TF1 programs, inside a session's graph).
_GRAPH_WRITERS: dict[tuple, tuple[tf.compat.v1.Session, Any, list[Any], Any]] = {}


def save_bundle(prefix: str, snapshot: Snapshot) -> None:
    """Write `snapshot` as a V2 bundle at `prefix`, with the `SaveV2` op a Saver uses."""
    if tf.executing_eagerly():
        tf.raw_ops.SaveV2(
            prefix=prefix,
            tensor_names=snapshot.keys,
            shape_and_slices=[""] * len(snapshot.keys),
            tensors=snapshot.tensors,
        )
        return
    layout = tuple((k, np.dtype(v.dtype).str, tuple(v.shape)) for k, v in zip(snapshot.keys, snapshot.tensors))
    if layout not in _GRAPH_WRITERS:
        graph = tf.Graph()
        with graph.as_default():
            prefix_input = tf.compat.v1.placeholder(tf.string, [])
            inputs = [tf.compat.v1.placeholder(v.dtype, v.shape) for v in snapshot.tensors]
            save = tf.raw_ops.SaveV2(
                prefix=prefix_input, tensor_names=snapshot.keys,
                shape_and_slices=[""] * len(snapshot.keys), tensors=inputs,
            )
        _GRAPH_WRITERS[layout] = (tf.compat.v1.Session(graph=graph), prefix_input, inputs, save)
    session, prefix_input, inputs, save = _GRAPH_WRITERS[layout]
    session.run(save, {prefix_input: prefix, **dict(zip(inputs, snapshot.tensors))})


def is_local(path: str) -> bool:
    return "://" not in path


class CheckpointWriter:
    """Saves, lists, deletes and indexes `<directory>/<basename>-<step>` checkpoints."""

    def __init__(self, directory: str, basename: str):
        self.directory = directory.rstrip("/") or "/"
        self.basename = basename

    def prefix(self, step: int) -> str:
        return naming.checkpoint_prefix(self.directory, self.basename, step)

    def write(
        self, step: int, snapshot: Snapshot, *, extra_files: Mapping[str, bytes] | None = None
    ) -> SavedCheckpoint:
        """Write `snapshot` as the checkpoint for `step` and publish it.

        `extra_files` maps suffixes (e.g. `.meta`) to contents written beside
        the checkpoint. On any failure the temporary files are removed and
        nothing that was there before is touched.
        """
        prefix = self.prefix(step)
        temp = prefix + naming.TEMP_INFIX
        start = time.perf_counter()
        try:
            tf.io.gfile.makedirs(self.directory)
            save_bundle(temp, snapshot)
            self._verify(temp, snapshot.keys)
            for suffix, data in (extra_files or {}).items():
                with tf.io.gfile.GFile(temp + suffix, "wb") as f:
                    f.write(data)
            # The index goes last: a checkpoint exists once its index does.
            names = self._files_of(temp)
            names.sort(key=lambda name: name.endswith(naming.INDEX_SUFFIX))
            for name in names:
                final = prefix + name[len(temp.rsplit("/", 1)[-1]) :]
                tf.io.gfile.rename(f"{self.directory}/{name}", final, overwrite=True)
        except (tf.errors.OpError, OSError, ValueError) as error:
            self._remove_files(temp)
            cause = getattr(error, "message", None) or str(error)
            raise CheckpointError(f"Cannot write checkpoint {prefix}: {cause}") from error
        seconds = time.perf_counter() - start
        return SavedCheckpoint(step, prefix, self._size(prefix), seconds)

    def _verify(self, prefix: str, keys: list[str]) -> None:
        stored = tf.compat.v1.train.NewCheckpointReader(prefix).get_variable_to_shape_map()
        absent = sorted(set(keys) - set(stored))
        if absent:
            raise ValueError(f"written checkpoint lacks {', '.join(absent)}")

    def check_free_space(self, nbytes: int) -> None:
        """Fail early when a local disk cannot hold `nbytes` more."""
        if not is_local(self.directory):
            return
        tf.io.gfile.makedirs(self.directory)
        free = shutil.disk_usage(self.directory).free
        if free < nbytes:
            raise CheckpointError(
                f"Cannot write a checkpoint to {self.directory}: it needs {nbytes:,} bytes and the "
                f"disk has {free:,} free. HINT: free space, lower checkpoint.max_to_keep or set "
                "checkpoint.max_total_bytes."
            )

    def list_checkpoints(self) -> list[CheckpointInfo]:
        """The complete checkpoints of this basename on disk, oldest step first."""
        if not tf.io.gfile.isdir(self.directory):
            return []
        # One listing and one stat per file: directories that keep every checkpoint get long.
        sizes: dict[int, int] = collections.defaultdict(int)
        written: dict[int, float] = {}
        for filename in tf.io.gfile.listdir(self.directory):
            match = naming.checkpoint_file_step(filename, self.basename)
            if match is None:
                continue
            step, is_index = match
            stat = tf.io.gfile.stat(f"{self.directory}/{filename}")
            sizes[step] += stat.length
            if is_index:
                written[step] = stat.mtime_nsec / 1e9
        return [CheckpointInfo(step, written[step], sizes[step]) for step in sorted(written)]

    def candidates(self) -> list[str]:
        """Checkpoint prefixes to resume from, best first: the state file's, then by step."""
        prefixes = [self.prefix(c.step) for c in reversed(self.list_checkpoints())]
        try:
            state = tf.train.get_checkpoint_state(self.directory)
        except (ValueError, tf.errors.OpError) as error:  # a damaged state file
            logger.warning("Ignoring %s/%s: %s", self.directory, naming.STATE_FILENAME, error)
            state = None
        # Only the state file's pick among our own checkpoints (another Saver may share it).
        if state and state.model_checkpoint_path in prefixes:
            path = state.model_checkpoint_path
            prefixes = [path] + [p for p in prefixes if p != path]
        return prefixes

    def latest(self) -> str | None:
        """The newest checkpoint: the state file's, or the highest step on disk."""
        candidates = self.candidates()
        return candidates[0] if candidates else None

    def delete(self, step: int) -> None:
        """Remove every file of the checkpoint for `step`, index first."""
        self._remove_files(self.prefix(step))

    def set_aside(self, prefix: str) -> str:
        """Rename an unreadable checkpoint out of the way; return its new prefix."""
        aside = prefix + naming.CORRUPT_INFIX
        for name in self._files_of(prefix):
            tail = name[len(prefix.rsplit("/", 1)[-1]) :]
            tf.io.gfile.rename(f"{self.directory}/{name}", aside + tail, overwrite=True)
        return aside

    def remove_stale_temp_files(self) -> list[str]:
        """Delete what a crashed save left behind; never a finished checkpoint."""
        if not tf.io.gfile.isdir(self.directory):
            return []
        ours = re.compile(re.escape(self.basename) + r"-\d+" + re.escape(naming.TEMP_INFIX))
        single = {
            name + naming.TEMP_INFIX
            for name in [naming.STATE_FILENAME, *naming.GRAPH_DEF_FILENAMES.values()]
        }
        stale = [
            name for name in tf.io.gfile.listdir(self.directory)
            if ours.match(name) or name.rstrip("/") in single
        ]
        for name in stale:
            path = f"{self.directory}/{name.rstrip('/')}"
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
        return stale

    def write_state(self, checkpoints: list[CheckpointInfo], latest: int | None) -> None:
        """Atomically point the `checkpoint` state file at step `latest` (None: at nothing).

        `checkpoints` are all those kept; `latest` goes last, as TF expects.
        """
        checkpoints = sorted(checkpoints, key=lambda c: (c.step == latest, c.step))
        names = [f"{self.basename}-{c.step}" for c in checkpoints]
        state = checkpoint_state_pb2.CheckpointState(
            model_checkpoint_path="" if latest is None else f"{self.basename}-{latest}",
            all_model_checkpoint_paths=names,
            all_model_checkpoint_timestamps=[c.timestamp for c in checkpoints],
        )
        atomic_write(f"{self.directory}/{naming.STATE_FILENAME}", text_format.MessageToString(state).encode())

    def _files_of(self, prefix: str) -> list[str]:
        name = prefix.rsplit("/", 1)[-1]
        if not tf.io.gfile.isdir(self.directory):
            return []
        return [f for f in tf.io.gfile.listdir(self.directory) if naming.is_checkpoint_file(f, name)]

    def _remove_files(self, prefix: str) -> None:
        names = self._files_of(prefix)
        names.sort(key=lambda name: not name.endswith(naming.INDEX_SUFFIX))
        for name in names:
            with contextlib.suppress(tf.errors.NotFoundError):
                tf.io.gfile.remove(f"{self.directory}/{name}")

    def _size(self, prefix: str) -> int:
        return sum(
            tf.io.gfile.stat(f"{self.directory}/{name}").length for name in self._files_of(prefix)
        )
