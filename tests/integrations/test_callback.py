"""The Keras callback end to end with tiny real models: cadence, resume, retention, restore."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fit, mlp, steps_on_disk
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.config import CheckpointConfig
from tfcheckpointer.errors import CheckpointError, ConfigError, RestoreMismatchError
from tfcheckpointer.checkpoint.keys import checkpoint_variables
from tfcheckpointer.checkpoint.manager import CheckpointManager

ROWS = 64


def test_saves_at_multiples_of_n_optimizer_steps_across_epochs_and_fits(tmp_path, data):
    model = mlp()
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=5, max_to_keep=None)
    fit(model, callback, data, epochs=2)  # 8 steps an epoch
    assert steps_on_disk(tmp_path) == [5, 10, 15, 16]  # 16: the final step at train end
    fit(model, callback, data, epochs=1)
    assert steps_on_disk(tmp_path) == [5, 10, 15, 16, 20, 24]


def test_steps_per_execution_saves_at_first_block_past_each_multiple(tmp_path, data):
    model = mlp(steps_per_execution=3)
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=5, max_to_keep=None)
    fit(model, callback, data, batch_size=4)  # 16 steps, reported as 3, 6, 9, 12, 15, 16
    assert steps_on_disk(tmp_path) == [6, 12, 15, 16]


def test_no_final_checkpoint_when_disabled_or_already_saved(tmp_path, data):
    callback = CheckpointCallback(
        directory=str(tmp_path), every_n_steps=5, max_to_keep=None, save_at_train_end=False
    )
    fit(mlp(), callback, data)
    assert steps_on_disk(tmp_path) == [5]
    other = tmp_path / "other"
    fit(mlp(), CheckpointCallback(directory=str(other), every_n_steps=4, max_to_keep=None), data)
    assert steps_on_disk(other) == [4, 8]


def test_tensorflow_reads_what_was_written(tmp_path, data):
    model = mlp()
    fit(model, CheckpointCallback(directory=str(tmp_path), every_n_steps=3), data)
    latest = tf.train.latest_checkpoint(str(tmp_path))
    assert latest == str(tmp_path / "model.ckpt-8")
    reader = tf.train.load_checkpoint(latest)
    assert reader.get_tensor("global_step") == 8
    for key, variable in checkpoint_variables(model, include_optimizer=True).items():
        np.testing.assert_array_equal(reader.get_tensor(key), variable.numpy(), err_msg=key)


def test_a_tf1_graph_restores_the_checkpoint_with_saver_restore(tmp_path, data):
    model = mlp()
    fit(model, CheckpointCallback(directory=str(tmp_path), every_n_steps=4), data)
    prefix = tf.train.latest_checkpoint(str(tmp_path))
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    graph = tf.Graph()
    with graph.as_default():
        variables = {
            key: tf.compat.v1.get_variable(key, shape=shape, dtype=dtypes[key])
            for key, shape in reader.get_variable_to_shape_map().items()
        }
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            saver.restore(session, prefix)
            kernel = session.run(variables["dense/kernel"])
    np.testing.assert_array_equal(kernel, model.layers[0].kernel.numpy())


def test_resume_restores_weights_and_optimizer_and_continues_the_count(tmp_path, data):
    trained = mlp(seed=1)
    fit(trained, CheckpointCallback(directory=str(tmp_path), every_n_steps=5), data, epochs=2)
    fresh = mlp(seed=2)  # other initial weights, and Keras numbers its layers differently
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=5)
    callback.set_model(fresh)
    callback.on_train_begin()
    assert int(fresh.optimizer.iterations.numpy()) == 16
    probe = data[0][:5]
    np.testing.assert_array_equal(fresh.predict(probe, verbose=0), trained.predict(probe, verbose=0))
    for a, b in zip(fresh.optimizer.variables, trained.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    fit(fresh, callback, data)
    assert steps_on_disk(tmp_path)[-2:] == [20, 24]


def test_retention_applies_to_checkpoints_of_earlier_runs(tmp_path, data):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=2, max_to_keep=None), data)
    assert steps_on_disk(tmp_path) == [2, 4, 6, 8]
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=2, max_to_keep=3), data)
    assert steps_on_disk(tmp_path) == [12, 14, 16]
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
        "model.ckpt-12", "model.ckpt-14", "model.ckpt-16",
    ]


def test_state_file_is_relative_so_the_directory_can_move(tmp_path, data):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path / "a"), every_n_steps=4), data)
    assert str(tmp_path) not in (tmp_path / "a" / "checkpoint").read_text()
    shutil.move(tmp_path / "a", tmp_path / "b")
    assert tf.train.latest_checkpoint(str(tmp_path / "b")) == str(tmp_path / "b" / "model.ckpt-8")


def test_restore_none_starts_fresh(tmp_path, data):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=8), data)
    model = mlp()
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=8, restore="none", on_existing="keep")
    callback.set_model(model)
    callback.on_train_begin()
    assert int(model.optimizer.iterations.numpy()) == 0


def test_restore_a_named_checkpoint_takes_its_weights(tmp_path, data):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=3, max_to_keep=None), data)
    model = mlp()
    callback = CheckpointCallback(
        directory=str(tmp_path / "finetune"), every_n_steps=3, restore=str(tmp_path / "model.ckpt-6")
    )
    callback.set_model(model)
    callback.on_train_begin()
    stored = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-6")).get_tensor("dense/kernel")
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), stored)


def test_restore_of_a_missing_checkpoint_is_an_error(tmp_path):
    model = mlp()
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=3, restore=str(tmp_path / "nope-5"))
    callback.set_model(model)
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*nope-5 \(.*nope-5.index does not exist\)"):
        callback.on_train_begin()


def test_restore_into_a_different_model_lists_the_differences(tmp_path, data):
    import keras

    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=8, include_optimizer=False), data)
    other = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(16), keras.layers.Dense(1), keras.layers.Dense(1)]
    )
    other.compile("adam", "mse")
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=8, include_optimizer=False)
    callback.set_model(other)
    with pytest.raises(RestoreMismatchError) as raised:
        callback.on_train_begin()
    error = raised.value
    assert error.missing == ["dense_2/bias", "dense_2/kernel"]
    assert "batch_normalization/gamma" in error.unexpected
    assert error.mismatched["dense/kernel"] == ((4, 16), (4, 8))
    assert "Shape of dense/kernel: model [4, 16], checkpoint [4, 8]" in str(error)


def test_without_optimizer_state_the_step_still_continues(tmp_path, data):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=8, include_optimizer=False), data)
    keys = [k for k, _ in tf.train.list_variables(str(tmp_path / "model.ckpt-8"))]
    assert "global_step" in keys and not [k for k in keys if k.startswith("optimizer/")]
    model = mlp()
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=8)  # wants optimizer state
    callback.set_model(model)
    callback.on_train_begin()
    assert int(model.optimizer.iterations.numpy()) == 8


def test_time_trigger_saves_when_the_interval_has_passed(tmp_path):
    model = mlp()
    model.optimizer.build(model.trainable_variables)
    now = [1000.0]
    config = CheckpointConfig(directory=str(tmp_path), every_n_seconds=60, max_to_keep=None)
    manager = CheckpointManager(config, clock=lambda: now[0])
    manager.start(checkpoint_variables(model, include_optimizer=True), step=0)
    assert manager.on_step(1) is None
    now[0] += 61
    assert manager.on_step(2).step == 2
    now[0] += 30
    assert manager.on_step(3) is None
    assert steps_on_disk(tmp_path) == [2]


def test_each_save_is_logged_with_step_path_bytes_and_seconds(tmp_path, data, caplog):
    with caplog.at_level(logging.INFO, logger="tfcheckpointer"):
        fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=8), data)
    record = [r for r in caplog.records if r.getMessage().startswith("Saved checkpoint")][0]
    assert record.getMessage().startswith(
        f"Saved checkpoint step=8 path={tmp_path}/model.ckpt-8 bytes="
    )
    assert int(record.args[2]) == sum(
        os.path.getsize(tmp_path / n) for n in os.listdir(tmp_path) if n.startswith("model.ckpt-8.")
    )


def test_verbose_prints_each_save(tmp_path, data, capsys):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=8, verbose=1), data)
    assert f"Saved checkpoint {tmp_path}/model.ckpt-8 (step 8" in capsys.readouterr().out


def test_other_tensorflow_filesystems_work():
    directory = "ram://tfcheckpointer-test/run"
    fit(mlp(), CheckpointCallback(directory=directory, every_n_steps=4, max_to_keep=1), _data())
    assert tf.train.latest_checkpoint(directory) == directory + "/model.ckpt-8"
    assert not tf.io.gfile.exists(directory + "/model.ckpt-4.index")


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, 4)).astype("float32")
    return x, x[:, :1]


def test_an_uncompiled_model_is_refused(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=1)
    callback.set_model(model)
    with pytest.raises(CheckpointError, match="no optimizer"):
        callback.on_train_begin()


def test_a_misspelt_option_is_refused_by_the_signature_or_the_schema(tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'every_n_step'"):
        CheckpointCallback(directory=str(tmp_path), every_n_step=5)
    with pytest.raises(ConfigError, match="did you mean 'every_n_steps'"):
        CheckpointCallback.from_dict({"checkpoint": {"directory": str(tmp_path), "every_n_step": 5}})
    with pytest.raises(ConfigError, match="every_n_steps"):
        CheckpointCallback(directory=str(tmp_path))


def test_from_dict_and_from_yaml_build_the_same_callback(tmp_path):
    text = f"checkpoint:\n  directory: {tmp_path}\n  every_n_steps: 7\nfreeze:\n  output: {tmp_path}/m.pb\n"
    (tmp_path / "job.yaml").write_text(text)
    from_yaml = CheckpointCallback.from_yaml(tmp_path / "job.yaml", {"checkpoint.max_to_keep": 2})
    from_dict = CheckpointCallback.from_dict(
        {"checkpoint": {"directory": str(tmp_path), "every_n_steps": 7, "max_to_keep": 2},
         "freeze": {"output": f"{tmp_path}/m.pb"}}
    )
    assert from_yaml.checkpoint_config == from_dict.checkpoint_config
    assert from_yaml.checkpoint_config.max_to_keep == 2
    assert from_yaml.freeze_config == from_dict.freeze_config


def test_other_keras_backends_are_refused_at_construction(tmp_path):
    code = (
        "from tfcheckpointer import CheckpointCallback\n"
        f"CheckpointCallback(directory={str(tmp_path)!r}, every_n_steps=1)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "BackendError: tfcheckpointer writes TensorFlow checkpoints" in result.stderr
    assert "'jax' backend" in result.stderr


class Subclassed(__import__("keras").Model):
    """A subclassed model with no input shape: Keras creates its variables in the first step."""

    def __init__(self):
        import keras

        super().__init__()
        self.hidden = keras.layers.Dense(4)
        self.out = keras.layers.Dense(1)

    def call(self, x):
        return self.out(self.hidden(x))


def test_a_model_built_by_its_first_step_is_checkpointed_and_resumed(tmp_path, data):
    import keras

    keras.utils.set_random_seed(0)
    trained = Subclassed()
    trained.compile("adam", "mse")
    fit(trained, CheckpointCallback(directory=str(tmp_path), every_n_steps=4), data)
    assert steps_on_disk(tmp_path) == [4, 8]
    fresh = Subclassed()
    fresh.compile("adam", "mse")
    fit(fresh, CheckpointCallback(directory=str(tmp_path), every_n_steps=4), data)
    # The first step built it; the restore after that step brought back step 8 (that
    # step's update is overwritten), and the epoch's 7 other batches continued from there.
    assert int(fresh.optimizer.iterations.numpy()) == 8 + 7
    assert steps_on_disk(tmp_path)[-2:] == [12, 15]


def subclassed() -> Subclassed:
    import keras

    keras.utils.set_random_seed(0)
    model = Subclassed()
    model.compile("adam", "mse")
    return model


def test_a_model_built_by_its_first_step_saves_that_step(tmp_path, data):
    x, y = data
    fit(subclassed(), CheckpointCallback(directory=str(tmp_path), every_n_steps=1), (x[:24], y[:24]))
    assert steps_on_disk(tmp_path) == [1, 2, 3]


def test_a_one_step_fit_of_a_model_built_by_its_first_step_gets_a_final_checkpoint(tmp_path, data):
    x, y = data
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=100)
    fit(subclassed(), callback, (x[:8], y[:8]))
    assert steps_on_disk(tmp_path) == [1]
    assert callback.manager.last_checkpoint == str(tmp_path / "model.ckpt-1")


def test_a_fit_that_runs_no_batch_on_an_unbuilt_model_ends_cleanly(tmp_path, data, caplog):
    x, y = data
    model = subclassed()
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=1, freeze={"output": str(tmp_path / "m.pb")})
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        model.fit(x, y, epochs=1, initial_epoch=1, callbacks=[callback], verbose=0)
    assert "Training ran no step" in caplog.text
    assert not list(tmp_path.iterdir())
    assert callback.frozen is None


def _masked_fit(tmp_path, callback):
    from tests.helpers import masked

    model = masked.build_model()
    data = masked.load_data()
    model.fit(data["x"], data["y"], batch_size=8, callbacks=[callback], verbose=0)
    return model


def _sidecar_probe(path) -> str:
    import json

    return json.loads(path.read_text())["probe"]


def test_probe_arrays_verify_the_frozen_graph(tmp_path):
    from tests.helpers import masked

    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=100,
        freeze={"output": str(tmp_path / "f.pb")}, probe=masked.tokens(4),
    )
    _masked_fit(tmp_path, callback)
    assert callback.frozen.max_abs_diff == 0.0
    assert _sidecar_probe(tmp_path / "f.pb.json") == "probe argument"


def test_a_probe_callable_is_called_once_before_the_first_step(tmp_path):
    from tests.helpers import masked

    steps_seen = []

    def probe():
        steps_seen.append(int(model.optimizer.iterations.numpy()))
        return masked.tokens(4)

    model = masked.build_model()
    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=100,
        freeze={"output": str(tmp_path / "f.pb")}, probe=probe,
    )
    data = masked.load_data()
    model.fit(data["x"], data["y"], batch_size=8, callbacks=[callback], verbose=0)
    assert steps_seen == [0]
    assert _sidecar_probe(tmp_path / "f.pb.json") == "probe argument"


def test_a_bad_probe_stops_training_before_the_first_step(tmp_path):
    from tests.helpers import masked
    from tfcheckpointer.errors import FreezeError

    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=1,
        freeze={"output": str(tmp_path / "f.pb")}, probe=np.zeros((4, 5), "int32"),
    )
    model = masked.build_model()
    data = masked.load_data()
    with pytest.raises(FreezeError, match=r"input 'tokens' \(probe argument\) has shape \(4, 5\); expected \(None, 3\)"):
        model.fit(data["x"], data["y"], batch_size=8, callbacks=[callback], verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 0
    assert os.listdir(tmp_path) == []


def test_freeze_probe_names_a_factory_and_probe_argument_wins(tmp_path):
    from tests.helpers import masked

    config = {
        "checkpoint": {"directory": str(tmp_path / "ckpt"), "every_n_steps": 100},
        "freeze": {"output": str(tmp_path / "f.pb"),
                   "probe": {"factory": "tests.helpers.masked:probe_rows", "kwargs": {"count": 2}}},
    }
    _masked_fit(tmp_path, CheckpointCallback.from_dict(config))
    assert _sidecar_probe(tmp_path / "f.pb.json") == "freeze.probe factory tests.helpers.masked:probe_rows"
    _masked_fit(tmp_path, CheckpointCallback.from_dict(config, probe=masked.tokens(2)))
    assert _sidecar_probe(tmp_path / "f.pb.json") == "probe argument"


def test_a_misspelt_freeze_probe_factory_is_refused_at_construction(tmp_path):
    freeze = {"output": str(tmp_path / "f.pb"), "probe": {"factory": "tests.helpers.masked:no_such"}}
    with pytest.raises(ConfigError, match=r"<arguments>: freeze.probe.factory: module 'tests.helpers.masked' has no attribute 'no_such'"):
        CheckpointCallback(directory=str(tmp_path), every_n_steps=1, freeze=freeze)
