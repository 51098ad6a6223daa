"""The host copy async saves write from: the values of their step, in arrays kept between saves."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfcheckpointer.checkpoint.bundle import Snapshot
from tfcheckpointer.checkpoint.staging import StagingBuffers


def snapshot_of(variables: dict[str, tf.Variable]) -> Snapshot:
    keys = sorted(variables)
    return Snapshot(keys, [variables[k].read_value() for k in keys])


def make_variables() -> dict[str, tf.Variable]:
    return {
        "kernel": tf.Variable(np.arange(12, dtype="float32").reshape(3, 4)),
        "step": tf.Variable(7, dtype=tf.int64),
        "half": tf.Variable(np.ones(5, dtype="float16")),
    }


def test_staged_values_are_the_snapshots_and_outlive_later_updates():
    variables = make_variables()
    staged = StagingBuffers().stage(snapshot_of(variables))
    variables["kernel"].assign_add(tf.ones((3, 4)))
    variables["step"].assign(8)
    assert staged.keys == ["half", "kernel", "step"]
    assert all(isinstance(t, np.ndarray) for t in staged.tensors)
    np.testing.assert_array_equal(staged.tensors[1], np.arange(12, dtype="float32").reshape(3, 4))
    assert staged.tensors[2] == 7 and staged.tensors[2].dtype == np.int64
    assert staged.tensors[0].dtype == np.float16
    assert not any(np.shares_memory(t, v.numpy()) for t, v in zip(staged.tensors, variables.values()))


def test_every_save_reuses_the_same_arrays():
    variables = make_variables()
    staging = StagingBuffers()
    first = staging.stage(snapshot_of(variables))
    kept = [t.__array_interface__["data"][0] for t in first.tensors]
    variables["kernel"].assign(tf.fill((3, 4), 5.0))
    second = staging.stage(snapshot_of(variables))
    assert [t.__array_interface__["data"][0] for t in second.tensors] == kept
    np.testing.assert_array_equal(second.tensors[1], np.full((3, 4), 5.0))
    assert staging.nbytes == 5 * 2 + 12 * 4 + 8


def test_a_changed_shape_or_a_dropped_key_gets_new_arrays():
    staging = StagingBuffers()
    staging.stage(Snapshot(["a", "b"], [tf.zeros(3), tf.zeros(2)]))
    staged = staging.stage(Snapshot(["a"], [tf.ones((2, 2))]))
    np.testing.assert_array_equal(staged.tensors[0], np.ones((2, 2)))
    assert staging.nbytes == 16
    staging.clear()
    assert staging.nbytes == 0


def test_what_the_bundle_writer_cannot_write_and_numpy_snapshots_pass_through():
    staging = StagingBuffers()
    strings = Snapshot(["vocab"], [tf.constant(["a", "b"])])
    sliced = Snapshot(["w", "w"], [tf.zeros(2), tf.zeros(2)], ["4 0,2", "4 2,2"])
    arrays = Snapshot(["w"], [np.zeros(2, dtype="float32")])  # a TF1 session's: copies already
    for snapshot in (strings, sliced, arrays):
        assert staging.stage(snapshot) is snapshot
    assert staging.nbytes == 0
