"""One checkpoint's files: writing a snapshot as a V2 bundle, and reading what a bundle holds.

A snapshot is written in the same key order that `tf.compat.v1.train.Saver`
uses, so the files are byte-identical to a Saver's: on a local disk, numeric
unpartitioned tensors by `bundle_writer` (the same bytes in ~0.65× the
time), anything else by the `SaveV2` op a Saver runs. `write_checkpoint`
publishes them atomically (see `files.publish`) after checking that the
written bundle opens and holds every key.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from tfcheckpointer.checkpoint import bundle_writer, naming
from tfcheckpointer.checkpoint.files import publish
from tfcheckpointer.checkpoint.storage import files_for, local_copy
from tfcheckpointer.checkpoint.tf_utils import op_error_text
from tfcheckpointer.errors import CheckpointError, RestoreMismatchError, first_line

if TYPE_CHECKING:
    from tfcheckpointer.checkpoint.spare import Claim

logger = logging.getLogger("tfcheckpointer")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The values of every saved variable at one instant, in Saver key order.

    A partitioned TF1 variable is one key with one tensor per slice, each
    with the slice spec a Saver writes for it (`SaveSliceInfo.spec`, e.g.
    `"3 4 0,2:0,4"`): the key repeats, in the order the Saver adds the slices.
    """

    keys: list[str]
    tensors: list[Any]  # eager tensors, or numpy arrays read through a session
    # SaveV2's `shape_and_slices`, one per tensor ("" for a whole tensor); None: all whole.
    slices: list[str] | None = None

    @property
    def shape_and_slices(self) -> list[str]:
        return list(self.slices) if self.slices is not None else [""] * len(self.keys)

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(t.shape)) * tf.as_dtype(t.dtype).size for t in self.tensors)


@dataclasses.dataclass(frozen=True)
class SavedCheckpoint:
    """What one save wrote."""

    step: int
    prefix: str
    bytes: int
    seconds: float


# One small graph per variable layout, to write numpy snapshots where eager
# execution is not available (TF1 programs, inside a session's graph).
_GRAPH_WRITERS: dict[tuple, tuple[tf.compat.v1.Session, Any, list[Any], Any]] = {}


def save_bundle(prefix: str, snapshot: Snapshot, *, spare: Claim | None = None) -> None:
    """Write `snapshot` as a V2 bundle at `prefix`, the bytes a Saver's `SaveV2` op writes.

    `spare`: a deleted checkpoint's data file claimed for this write (see
    `CheckpointSaver`): overwritten as the new data file, or removed first
    where `SaveV2` writes.
    """
    reason = "TensorFlow's file system writes URLs" if "://" in prefix else None
    if reason is None:
        # np.asarray shares an eager tensor's buffer: no copy on the way to the file.
        arrays = [np.asarray(t) for t in snapshot.tensors]
        reason = bundle_writer.unsupported_reason(snapshot.keys, arrays, snapshot.shape_and_slices)
        if reason is None:
            bundle_writer.write_bundle(prefix, snapshot.keys, arrays, reuse=spare)
            return
    logger.debug("Writing %s with SaveV2: %s.", prefix, reason)
    if spare is not None:
        spare.discard()
    if tf.executing_eagerly():
        tf.raw_ops.SaveV2(
            prefix=prefix,
            tensor_names=snapshot.keys,
            shape_and_slices=snapshot.shape_and_slices,
            tensors=snapshot.tensors,
        )
        return
    slices = snapshot.shape_and_slices
    layout = tuple(
        (k, spec, np.dtype(v.dtype).str, tuple(v.shape))
        for k, spec, v in zip(snapshot.keys, slices, snapshot.tensors)
    )
    if layout not in _GRAPH_WRITERS:
        graph = tf.Graph()
        with graph.as_default():
            prefix_input = tf.compat.v1.placeholder(tf.string, [])
            inputs = [tf.compat.v1.placeholder(v.dtype, v.shape) for v in snapshot.tensors]
            save = tf.raw_ops.SaveV2(
                prefix=prefix_input, tensor_names=snapshot.keys,
                shape_and_slices=slices, tensors=inputs,
            )
        _GRAPH_WRITERS[layout] = (tf.compat.v1.Session(graph=graph), prefix_input, inputs, save)
    session, prefix_input, inputs, save = _GRAPH_WRITERS[layout]
    session.run(save, {prefix_input: prefix, **dict(zip(inputs, snapshot.tensors))})


def write_checkpoint(
    prefix: str,
    snapshot: Snapshot,
    *,
    extra_files: Mapping[str, bytes] | None = None,
    spare: Claim | None = None,
) -> float:
    """Write and publish `snapshot` at `prefix`; return the seconds it took.

    `extra_files` maps suffixes (e.g. `.meta`) to contents written beside the
    bundle and published with it. `spare` is overwritten or removed (`save_bundle`).
    On any failure nothing is left under a temporary name and nothing that
    was there before is touched.
    """
    start = time.perf_counter()

    def write(temp: str) -> None:
        save_bundle(temp, snapshot, spare=spare)
        for suffix, data in (extra_files or {}).items():
            with tf.io.gfile.GFile(temp + suffix, "wb") as f:
                f.write(data)

    def check(temp: str) -> None:
        stored = tf.compat.v1.train.NewCheckpointReader(temp).get_variable_to_shape_map()
        absent = sorted(set(snapshot.keys) - set(stored))
        if absent:
            raise ValueError(f"written checkpoint lacks {', '.join(absent)}")

    try:
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else "."
        files_for(directory).makedirs(directory)
        publish(prefix, write, check=check, several_files=True)
    except (tf.errors.OpError, OSError, ValueError) as error:
        raise CheckpointError(
            f"Cannot write checkpoint {prefix}: {op_error_text(error)}"
        ) from error
    return time.perf_counter() - start


def checkpoint_shapes(prefix: str) -> dict[str, list[int]]:
    """`{key: shape}` of the checkpoint at `prefix`; a key saved in slices has its full shape."""
    try:
        return dict(tf.train.list_variables(prefix))
    except Exception as error:  # the C++ reader maps file damage to many Python types
        raise CheckpointError(f"Cannot read checkpoint {prefix}: {error}") from None


def read_step(prefix: str, shapes: Mapping[str, Any] | None = None) -> tuple[int | None, str | None]:
    """The checkpoint's step and where it came from.

    The scalar `global_step` tensor (`"global_step"`) if the checkpoint has
    one, else the number ending the prefix (`"prefix"`), else `(None, None)`.
    """
    shapes = checkpoint_shapes(prefix) if shapes is None else shapes
    if naming.GLOBAL_STEP_KEY in shapes and not list(shapes[naming.GLOBAL_STEP_KEY]):
        try:
            value = tf.train.load_checkpoint(prefix).get_tensor(naming.GLOBAL_STEP_KEY)
            return int(value), naming.GLOBAL_STEP_KEY
        except Exception as error:  # the C++ reader maps file damage to many Python types
            raise CheckpointError(
                f"Cannot read {naming.GLOBAL_STEP_KEY} from {prefix}: {first_line(error)}"
            ) from None
    step = naming.step_of_prefix(prefix)
    return (step, "prefix") if step is not None else (None, None)


def check_compatible(
    prefix: str, shapes: Mapping[str, Any], *, optional: set[str], name: str | None = None
) -> dict[str, list[int]]:
    """Raise `RestoreMismatchError` unless `prefix` holds every key of `shapes`, shaped alike.

    `name` is what the error calls the checkpoint (its URL, when `prefix` is a local copy).

    Returns the checkpoint's own `{key: shape}`, read once for the check.

    Keys in `optional` may be absent; keys the checkpoint has beyond them are
    reported as unexpected only when they are outside the optimizer scope and
    not `global_step` (a checkpoint written with optimizer state restores into
    a run without, and a warm start takes the weights only).
    """
    stored = checkpoint_shapes(prefix)
    missing = [k for k in shapes if k not in stored and k not in optional]
    unexpected = [k for k in stored if k not in shapes and not is_optimizer_state(k)]
    mismatched = {
        k: (tuple(shape), tuple(stored[k]))
        for k, shape in shapes.items()
        if k in stored and list(shape) != list(stored[k])
    }
    if missing or unexpected or mismatched:
        raise RestoreMismatchError(
            name or prefix, missing=missing, unexpected=unexpected, mismatched=mismatched
        )
    return stored


def holds_values(prefix: str, values: Mapping[str, Any]) -> bool:
    """Whether the checkpoint at `prefix` holds exactly `values` (`{key: tensor}`), bit for bit."""
    with local_copy(prefix) as local:
        try:
            reader = tf.compat.v1.train.NewCheckpointReader(local)
        except Exception:  # the C++ reader maps file damage to many Python types
            return False
        for key, value in values.items():
            if not reader.has_tensor(key):
                return False
            stored, now = reader.get_tensor(key), np.asarray(value)
            if stored.dtype != now.dtype or stored.shape != now.shape or stored.tobytes() != now.tobytes():
                return False
        return True


def is_optimizer_key(key: str) -> bool:
    """Whether `key` is optimizer state (`optimizer/...`), which a model can do without."""
    return key.startswith(naming.OPTIMIZER_SCOPE + "/")


def is_optimizer_state(key: str) -> bool:
    """Optimizer state or the step: what a warm start leaves behind by default."""
    return key == naming.GLOBAL_STEP_KEY or is_optimizer_key(key)
