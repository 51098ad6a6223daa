"""`export.warm_start`: where a scheduled run starts after a finished, interrupted or rolled-back one.

Real runs of the tiny MLP on one checkpoint directory, each a new callback
as a new scheduled run would make. A version is kept out of LATEST by hand
(`move_latest(..., by="manual")`, what `tfcheckpointer promote --version 1`
does), which is what a rollback, or a champion gate's rejection, leaves.
"""

from __future__ import annotations

import logging
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fit, mlp, rows, steps_on_disk
from tfcheckpointer.checkpoint.keys import checkpoint_variables
from tfcheckpointer.export import versions
from tfcheckpointer.integrations.keras_callback import CheckpointCallback


class _StateAtBegin(keras.callbacks.Callback):
    """Listed after the checkpoint callback: the state each variable has once the restore is done."""

    def on_train_begin(self, logs=None):
        variables = checkpoint_variables(self.model, include_optimizer=True)
        self.state = {key: np.array(variable.numpy()) for key, variable in variables.items()}


class _StopAfter(keras.callbacks.Callback):
    """A run that dies after `batches` batches, once the checkpoint callback has saved them."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.batches:
            raise KeyboardInterrupt("killed")


def run(seed, *, extra=(), every_n_steps=2, max_to_keep=5, **export):
    """One scheduled run in the current directory: 16 rows, batch 8, so 2 steps; exports into exports/."""
    callback = CheckpointCallback(
        "ckpt", every_n_steps=every_n_steps, max_to_keep=max_to_keep,
        freeze={"output": "model.pb"}, export={"directory": "exports", **export},
    )
    begin = _StateAtBegin()
    fit(mlp(seed=seed), [callback, begin, *extra], rows(16, seed=seed))
    return callback, begin.state


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Run 1 exports version 1 (step 2); run 2 resumes from it and exports version 2 (step 4)."""
    directory = tmp_path_factory.mktemp("two_runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        run(1)
        second, state = run(2)
    return directory, second, state


@pytest.fixture
def after_two_runs(two_runs, tmp_path, monkeypatch):
    """A copy of `two_runs`' directory as the current directory (paths in it are relative)."""
    shutil.copytree(two_runs[0], tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def roll_back_to(version):
    versions.move_latest("exports", version, by="manual", reason="rolled back by hand")


def set_aside_directories():
    return [name for name in os.listdir("ckpt") if name.startswith("set-aside-")]


def assert_state_is(state, prefix):
    reader = tf.train.load_checkpoint(prefix)
    for key, value in state.items():
        if not key.endswith("learning_rate"):  # compile's, in any warm start
            np.testing.assert_array_equal(value, reader.get_tensor(key), err_msg=key)


def test_after_a_promoted_version_the_run_resumes(two_runs):
    directory, second, state = two_runs
    assert (second.started_from, second.started_from_version) == (2, None)
    assert state["global_step"] == 2
    assert [n for n in os.listdir(directory / "ckpt") if n.startswith("set-aside-")] == []


def test_after_a_rolled_back_version_the_run_starts_from_the_promoted_one(after_two_runs, caplog):
    roll_back_to(1)
    caplog.set_level(logging.INFO, logger="tfcheckpointer")
    third, state = run(3)
    kept = "exports/1/checkpoint/model.ckpt-2"
    assert (third.started_from, third.started_from_version) == (2, 1)
    assert_state_is(state, kept)
    assert state["global_step"] == 2 and any(key.startswith("optimizer/") for key in state)
    (aside,) = set_aside_directories()
    assert steps_on_disk(f"ckpt/{aside}") == [2, 4]  # the rejected run's, kept restorable
    assert steps_on_disk("ckpt") == [4]  # this run's own step 4, not the rejected one's
    assert third.exported.manifest["checkpoint"] == "ckpt/model.ckpt-4"
    (line,) = [m for m in caplog.messages if m.startswith("Starting from")]
    assert line == (
        f"Starting from promoted version 1 (step 2, {kept}): the newest checkpoint is version 2's, "
        f"which is not promoted (1 is); this directory's checkpoints were set aside in ckpt/{aside}."
    )


def test_the_promoted_version_is_started_from_after_retention_deleted_its_source(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    run(1, max_to_keep=1)
    run(2, max_to_keep=1)
    assert steps_on_disk("ckpt") == [4]  # version 1's source, step 2, is gone
    roll_back_to(1)
    third, state = run(3, max_to_keep=1)
    assert (third.started_from, third.started_from_version) == (2, 1)
    assert_state_is(state, "exports/1/checkpoint/model.ckpt-2")


def test_an_interrupted_run_is_resumed_not_replaced_by_the_promoted_version(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(1)
    with pytest.raises(KeyboardInterrupt):
        run(2, extra=[_StopAfter(1)], every_n_steps=1)
    assert steps_on_disk("ckpt") == [2, 3]
    third, state = run(3)
    assert (third.started_from, third.started_from_version) == (3, None)
    assert_state_is(state, "ckpt/model.ckpt-3")
    assert set_aside_directories() == []


def test_warm_start_latest_resumes_from_the_rejected_run(after_two_runs):
    roll_back_to(1)
    third, state = run(3, warm_start="latest")
    assert (third.started_from, third.started_from_version) == (4, None)
    assert_state_is(state, "ckpt/model.ckpt-4")
    assert set_aside_directories() == []


def test_with_no_promoted_version_the_run_starts_fresh(after_two_runs, caplog):
    os.remove("exports/LATEST")
    caplog.set_level(logging.INFO, logger="tfcheckpointer")
    third, state = run(3)
    assert (third.started_from, third.started_from_version) == (0, None)
    assert state["global_step"] == 0
    (aside,) = set_aside_directories()
    assert steps_on_disk(f"ckpt/{aside}") == [2, 4]
    assert (
        "Starting fresh: the newest checkpoint is version 2's, which is not promoted, and no "
        f"version is promoted; this directory's checkpoints were set aside in ckpt/{aside}."
    ) in caplog.messages
