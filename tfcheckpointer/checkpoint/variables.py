"""The variables a manager checkpoints: read as snapshots and restored, eagerly or in a session.

Two thin adapters with one interface (`shapes`, `snapshot`,
`restore`): `EagerVariables` for Keras / TF2 variables in eager mode, and
`SessionVariables` for TF1 graph variables read through a session. The
session adapter creates its ops up front, so it works with sessions whose
graph is finalized, and saves a partitioned variable as a TF1 `Saver` does:
one key, written slice by slice with each slice's spec, in full shape.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import tensorflow as tf

from tfcheckpointer.checkpoint.bundle import Snapshot
from tfcheckpointer.checkpoint.naming import GLOBAL_STEP_KEY
from tfcheckpointer.checkpoint.tf_utils import op_error_text, quiet_tensorflow, tf_variable
from tfcheckpointer.errors import CheckpointError, KeyCollisionError


def make_saver(variables: Mapping[str, Any], *, filename: str | None = None) -> tf.compat.v1.train.Saver:
    """A V2-format Saver over `{key: Keras or TF variable}` (or a partitioned one's slices).

    `filename` is the prefix its restore op reads when none is fed (a restore
    that runs as part of a session's init op).
    """
    var_list = {
        key: [tf_variable(part) for part in v] if isinstance(v, list) else tf_variable(v)
        for key, v in variables.items()
    }
    with quiet_tensorflow():
        return tf.compat.v1.train.Saver(
            var_list=var_list,
            filename=filename,
            max_to_keep=None,
            save_relative_paths=True,
            write_version=tf.compat.v1.train.SaverDef.V2,
        )


def saver_variables(variables: Iterable[tf.Variable]) -> dict[str, tf.Variable | list[tf.Variable]]:
    """`{checkpoint key: variable}` for TF1 graph variables, keyed as a default `Saver()` keys them.

    A variable is keyed by its op name, except the slices of a partitioned
    variable (`hidden/kernel/part_0`, `.../part_1`, which carry a
    `SaveSliceInfo`): they go under the partitioned variable's full name
    (`hidden/kernel`) as one list, sorted by name as the Saver sorts them, so
    the checkpoint holds one `hidden/kernel` tensor of the full shape.

    Raises:
        KeyCollisionError: A whole variable is named like a partitioned one,
            which a Saver refuses too ("Mixing slices and non-slices").
    """
    whole: dict[str, tf.Variable] = {}
    sliced: dict[str, list[tf.Variable]] = {}
    for variable in sorted(variables, key=lambda v: v.name):
        info = variable._save_slice_info  # TF's own Saver reads it the same way
        if info is None:
            whole[variable.op.name] = variable
        else:
            sliced.setdefault(info.full_name, []).append(variable)
    clashes = sorted(set(whole) & set(sliced))
    if clashes:
        raise KeyCollisionError(
            {key: [whole[key].op.name, *(part.op.name for part in sliced[key])] for key in clashes},
            hint="rename the variable or the partitioned variable: a TF1 Saver cannot save "
            "both under one key.",
        )
    return {**whole, **sliced}


def _tensors_of(value: Any) -> list[tuple[tf.Variable, str]]:
    """`(variable, slice spec)` per tensor a Saver writes under one key ("" for a whole one)."""
    if isinstance(value, list):
        return [(part, part._save_slice_info.spec) for part in value]
    return [(value, "")]


def _full_shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, list):
        return tuple(value[0]._save_slice_info.full_shape)
    return tuple(value.shape.as_list())


def _restore_failed(prefix: str, error: Exception) -> CheckpointError:
    return CheckpointError(f"Cannot restore checkpoint {prefix}: {op_error_text(error)}")


class EagerVariables:
    """Keras or TF2 variables, by checkpoint key, read and restored eagerly."""

    def __init__(self, variables: Mapping[str, Any]):
        self.variables = dict(variables)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.variables.items()}

    def snapshot(self) -> Snapshot:
        """The current values; later updates do not change them (TF copies on write)."""
        keys = sorted(self.variables)  # the order a Saver writes in
        return Snapshot(keys, [tf_variable(self.variables[k]).read_value() for k in keys])

    def restore(self, prefix: str, keys: Collection[str]) -> None:
        wanted = {k: tf_variable(self.variables[k]) for k in keys}
        try:
            if any(isinstance(v, tf.distribute.DistributedValues) for v in wanted.values()):
                # A Saver refuses `tf.distribute` variables eagerly; an assignment outside a
                # replica context sets every local copy. (Reading the value back would
                # aggregate a variable synced on read: a collective only this worker joins.)
                reader = tf.train.load_checkpoint(prefix)
                for key in sorted(wanted):
                    wanted[key].assign(reader.get_tensor(key), read_value=False)
                return
            with quiet_tensorflow():
                make_saver(wanted).restore(None, prefix)
        except (tf.errors.OpError, ValueError) as error:
            raise _restore_failed(prefix, error) from None

    def assign(self, snapshot: Snapshot) -> None:
        """Set the variables to a snapshot's values (another worker's, broadcast)."""
        for key, tensor in zip(snapshot.keys, snapshot.tensors):
            tf_variable(self.variables[key]).assign(tensor, read_value=False)


class SessionVariables:
    """TF1 graph variables, by checkpoint key, read and restored through a session.

    `variables` maps keys to variables, or to the list of a partitioned
    variable's slices (see `saver_variables`). Build it while the graph can
    still take ops (a hook's `begin`); it adds a Saver for each key set
    `restore` may be asked for: all keys, all but `optional` (a checkpoint
    without optimizer state), and all but `global_step` (a warm start).
    Snapshots fetch the variables (each slice) themselves, so no read ops of
    ours land in the user's graph (or its `.meta`).
    """

    def __init__(
        self,
        variables: Mapping[str, tf.Variable | list[tf.Variable]],
        *,
        optional: Collection[str] = (),
    ):
        self.variables = dict(variables)
        # One entry per tensor written, in a Saver's order: keys sorted, slices as listed.
        entries = [
            (key, *tensor) for key in sorted(self.variables)
            for tensor in _tensors_of(self.variables[key])
        ]
        self._keys = [key for key, _, _ in entries]
        self._slices = [spec for _, _, spec in entries]
        self._fetches = [variable for _, variable, _ in entries]
        with quiet_tensorflow():
            self.savers = {frozenset(self.variables): make_saver(self.variables)}
            required = {k: v for k, v in self.variables.items() if k not in set(optional)}
            if len(required) < len(self.variables):
                self.savers[frozenset(required)] = make_saver(required)
            # A warm start takes everything but the step.
            if GLOBAL_STEP_KEY in self.variables and len(self.variables) > 1:
                stepless = {k: v for k, v in self.variables.items() if k != GLOBAL_STEP_KEY}
                self.savers[frozenset(stepless)] = make_saver(stepless)
        self.session: tf.compat.v1.Session | None = None

    def bind(self, session: Any) -> None:
        self.session = session

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: _full_shape(v) for k, v in self.variables.items()}

    def snapshot(self) -> Snapshot:
        # A fetched variable is its existing read (or ref) tensor; the arrays are copies.
        values = self.session.run(self._fetches)
        return Snapshot(list(self._keys), list(values), list(self._slices))

    def restore(self, prefix: str, keys: Collection[str]) -> None:
        saver = self.savers.get(frozenset(keys))
        if saver is None:
            raise CheckpointError(
                f"Cannot restore checkpoint {prefix}: it holds an unexpected subset of the graph's "
                "variables."
            )
        try:
            with quiet_tensorflow():
                saver.restore(self.session, prefix)
        except (tf.errors.OpError, ValueError) as error:
            raise _restore_failed(prefix, error) from None
