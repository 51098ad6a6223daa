"""The variables a manager checkpoints: read as snapshots and restored, eagerly or in a session.

Two thin adapters with one interface (`shapes`, `snapshot`,
`restore`): `EagerVariables` for Keras / TF2 variables in eager mode, and
`SessionVariables` for TF1 graph variables read through a session. The
session adapter creates its ops up front, so it works with sessions whose
graph is finalized.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import tensorflow as tf

from tfcheckpointer.checkpoint.bundle import Snapshot
from tfcheckpointer.checkpoint.naming import GLOBAL_STEP_KEY
from tfcheckpointer.checkpoint.tf_utils import op_error_text, quiet_tensorflow, tf_variable
from tfcheckpointer.errors import CheckpointError


def make_saver(variables: Mapping[str, Any], *, filename: str | None = None) -> tf.compat.v1.train.Saver:
    """A V2-format Saver over `{key: Keras or TF variable}`.

    `filename` is the prefix its restore op reads when none is fed (a restore
    that runs as part of a session's init op).
    """
    var_list = {key: tf_variable(v) for key, v in variables.items()}
    with quiet_tensorflow():
        return tf.compat.v1.train.Saver(
            var_list=var_list,
            filename=filename,
            max_to_keep=None,
            save_relative_paths=True,
            write_version=tf.compat.v1.train.SaverDef.V2,
        )


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
        try:
            with quiet_tensorflow():
                make_saver({k: self.variables[k] for k in keys}).restore(None, prefix)
        except (tf.errors.OpError, ValueError) as error:
            raise _restore_failed(prefix, error) from None


class SessionVariables:
    """TF1 graph variables, by checkpoint key, read and restored through a session.

    Build it while the graph can still take ops (a hook's `begin`); it adds
    a Saver for each key set `restore` may be asked for: all keys, all but
    `optional` (a checkpoint without optimizer state), and all but
    `global_step` (a warm start). Snapshots fetch the variables themselves,
    so no read ops of ours land in the user's graph (or its `.meta`).
    """

    def __init__(self, variables: Mapping[str, tf.Variable], *, optional: Collection[str] = ()):
        self.variables = dict(variables)
        self._keys = sorted(self.variables)
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
        return {k: tuple(v.shape.as_list()) for k, v in self.variables.items()}

    def snapshot(self) -> Snapshot:
        # A fetched variable is its existing read (or ref) tensor; the arrays are copies.
        values = self.session.run([self.variables[k] for k in self._keys])
        return Snapshot(list(self._keys), list(values))

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
