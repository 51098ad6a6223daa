"""Fine-tuning from another run's checkpoint, resuming with another optimizer, and `restore: none`.

A warm start (`checkpoint.restore: <another run's prefix or directory>`)
takes the model's weights; the optimizer, its learning rate and the step
come from `compile`, unless `restore_optimizer: true` asks for the slots and
the step too. Resuming a run's own checkpoints with another kind of optimizer
is refused, and so is `restore: none` into a directory of another run unless
`on_existing` says what to do with its checkpoints.
"""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fit, mlp, steps_on_disk
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.errors import CheckpointError, ConfigError, OptimizerMismatchError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A run trained to step 8 with Adam(1e-3), in another process."""
    directory = tmp_path_factory.mktemp("pretrained")
    code = (
        "from tests.helpers import fit, mlp\n"
        "from tfcheckpointer import CheckpointCallback\n"
        f"fit(mlp(), CheckpointCallback(directory={str(directory)!r}, every_n_steps=4))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=300)
    return directory / "model.ckpt-8"


def stored(prefix, key: str) -> np.ndarray:
    return tf.train.load_checkpoint(str(prefix)).get_tensor(key)


def compiled(optimizer) -> keras.Model:
    model = mlp(seed=9)
    model.compile(optimizer, "mse")
    return model


def begin(model: keras.Model, **options) -> CheckpointCallback:
    callback = CheckpointCallback(every_n_steps=4, **options)
    callback.set_model(model)
    callback.on_train_begin()
    return callback


def test_a_warm_start_takes_the_weights_and_keeps_the_compiled_optimizer(tmp_path, pretrained):
    model = compiled(keras.optimizers.Adam(1e-5))
    callback = begin(model, directory=str(tmp_path / "finetune"), restore=str(pretrained))
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), stored(pretrained, "dense/kernel"))
    assert model.optimizer.iterations.numpy() == 0
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-5)
    slots = [v for v in model.optimizer.variables if "momentum" in v.name]
    assert slots and all(not np.any(v.numpy()) for v in slots)
    callback.manager.close()


def test_a_warm_starts_steps_count_from_zero(tmp_path, pretrained):
    fit(compiled(keras.optimizers.Adam(1e-5)), CheckpointCallback(
        directory=str(tmp_path / "finetune"), every_n_steps=4, restore=str(pretrained)
    ))
    assert steps_on_disk(tmp_path / "finetune") == [4, 8]


def test_restore_optimizer_takes_the_slots_and_step_but_not_the_learning_rate(tmp_path, pretrained):
    model = compiled(keras.optimizers.Adam(1e-5))
    callback = begin(
        model, directory=str(tmp_path / "finetune"), restore=str(pretrained), restore_optimizer=True
    )
    assert model.optimizer.iterations.numpy() == 8
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-5)
    np.testing.assert_array_equal(
        _slot(model, "dense/kernel", "momentum"),
        stored(pretrained, "optimizer/dense/kernel/momentum"),
    )
    callback.manager.close()


def _slot(model: keras.Model, key: str, slot: str) -> np.ndarray:
    from tfcheckpointer.checkpoint.keys import checkpoint_variables

    return checkpoint_variables(model, include_optimizer=True)[f"optimizer/{key}/{slot}"].numpy()


def test_a_warm_start_may_change_the_optimizer(tmp_path, pretrained):
    model = compiled(keras.optimizers.SGD(0.01, momentum=0.9))
    callback = begin(model, directory=str(tmp_path / "finetune"), restore=str(pretrained))
    assert model.optimizer.learning_rate.numpy() == pytest.approx(0.01)
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), stored(pretrained, "dense/kernel"))
    callback.manager.close()


def test_resuming_with_another_optimizer_is_refused_naming_both(tmp_path, pretrained):
    run = tmp_path / "run"
    fit(mlp(), CheckpointCallback(directory=str(run), every_n_steps=4))
    before = sorted(os.listdir(run))
    model = compiled(keras.optimizers.SGD(0.01, momentum=0.9))
    callback = CheckpointCallback(directory=str(run), every_n_steps=4)
    callback.set_model(model)
    with pytest.raises(
        OptimizerMismatchError,
        match=r"model\.ckpt-8 holds the state of another optimizer: its slots are "
        r"momentum, velocity; the model's optimizer \(SGD\) has momentum\.",
    ):
        callback.on_train_begin()
    assert model.optimizer.iterations.numpy() == 0  # nothing was restored
    assert sorted(os.listdir(run)) == before


def test_restore_optimizer_with_another_optimizer_is_refused(tmp_path, pretrained):
    model = compiled(keras.optimizers.SGD(0.01, momentum=0.9))
    callback = CheckpointCallback(
        directory=str(tmp_path / "finetune"), every_n_steps=4, restore=str(pretrained),
        restore_optimizer=True,
    )
    callback.set_model(model)
    with pytest.raises(
        OptimizerMismatchError,
        match=r"the model's optimizer \(SGD\) has momentum\. .*\nHINT: set "
        r"checkpoint\.restore_optimizer: false to take the weights only",
    ):
        callback.on_train_begin()


def test_resuming_with_a_learning_rate_schedule_is_the_same_optimizer(tmp_path):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=4))
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=10, decay_rate=0.9)
    model = compiled(keras.optimizers.Adam(schedule))
    callback = begin(model, directory=str(tmp_path))
    assert model.optimizer.iterations.numpy() == 8
    np.testing.assert_array_equal(
        _slot(model, "dense/kernel", "velocity"),
        stored(tmp_path / "model.ckpt-8", "optimizer/dense/kernel/velocity"),
    )
    callback.manager.close()


def test_restore_none_into_another_runs_directory_is_refused_and_changes_nothing(tmp_path):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=4))
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=4, restore="none")
    callback.set_model(mlp())
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint\.restore is none, but .* already holds 2 checkpoint\(s\) "
        r"\(model\.ckpt-8, model\.ckpt-4\); .* HINT: set checkpoint\.on_existing: set_aside",
    ):
        callback.on_train_begin()
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before


def test_on_existing_set_aside_moves_the_earlier_run_out_of_the_way(tmp_path):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=4))
    fit(mlp(seed=2), CheckpointCallback(
        directory=str(tmp_path), every_n_steps=4, restore="none", on_existing="set_aside",
        max_to_keep=3,
    ), epochs=2)
    assert steps_on_disk(tmp_path) == [8, 12, 16]  # this run's own, not mixed with the other's
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("set-aside-")]
    assert steps_on_disk(aside) == [4, 8]
    assert tf.train.latest_checkpoint(str(aside)) == str(aside / "model.ckpt-8")


def test_on_existing_keep_mixes_with_the_earlier_run_and_says_what_it_replaces(tmp_path, caplog):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=4, max_to_keep=None))
    model = mlp(seed=2)
    fit(model, CheckpointCallback(
        directory=str(tmp_path), every_n_steps=4, restore="none", on_existing="keep",
        max_to_keep=None,
    ), epochs=2)
    assert model.optimizer.iterations.numpy() == 16
    assert steps_on_disk(tmp_path) == [4, 8, 12, 16]
    replaced = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Replacing")]
    assert replaced == [
        f"Replacing the checkpoint {tmp_path}/model.ckpt-{step} that was already on disk."
        for step in (4, 8)
    ]


def test_on_existing_takes_only_its_three_values():
    with pytest.raises(ConfigError, match="on_existing: expected one of 'error', 'keep', 'set_aside'"):
        CheckpointCallback(directory="d", every_n_steps=1, on_existing="overwrite")
