"""The train-end work: which weights are frozen and named, what fails before training, what survives.

- The frozen graph and the checkpoint its sidecar names hold the weights the
  model has when `fit()` returns, whatever the order of the callbacks
  (EarlyStopping with `restore_best_weights` changes them in its own
  `on_train_end`).
- What would make the train-end freeze fail is found before the first step.
- A freeze that fails at the end keeps the checkpoints and `fit`'s History.
- Two callbacks on one directory in one process are refused, naming both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fit, mlp, rows, run_in_tf1_session, steps_on_disk
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.checkpoint.keys import model_variable_keys
from tfcheckpointer.errors import CheckpointError, FreezeError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = np.random.default_rng(5).standard_normal((7, 4)).astype("float32")


def earliest_is_best() -> keras.callbacks.EarlyStopping:
    """Restores the first epoch's weights at train end: "best" is the highest loss."""
    return keras.callbacks.EarlyStopping(
        monitor="loss", mode="max", patience=10, restore_best_weights=True
    )


def checkpoint_holds_model(prefix: str, model: keras.Model) -> bool:
    reader = tf.train.load_checkpoint(prefix)
    weights = {id(w) for w in model.weights}
    return all(
        np.array_equal(reader.get_tensor(key), np.asarray(variable))
        for key, variable in model_variable_keys(model).items()
        if id(variable) in weights
    )


@pytest.mark.parametrize("every, named_step", [(8, 8), (12, 24)])
@pytest.mark.parametrize("order", ["checkpointer first", "checkpointer last"])
def test_frozen_graph_and_its_checkpoint_hold_the_weights_fit_returns(tmp_path, order, every, named_step):
    model = mlp()
    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=every, max_to_keep=None,
        freeze={"output": str(tmp_path / "model.pb")},
    )
    stopper = earliest_is_best()
    callbacks = [callback, stopper] if order == "checkpointer first" else [stopper, callback]
    x, y = rows(64)
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)
    assert stopper.best_epoch == 0  # the weights the model holds are step 8's, not step 24's

    (frozen,) = run_in_tf1_session(tmp_path / "model.pb", {"features": PROBE}, ["dense_1"])
    np.testing.assert_allclose(frozen, model.predict(PROBE, verbose=0), atol=1e-6)
    sidecar = json.loads((tmp_path / "model.pb.json").read_text())
    assert sidecar["checkpoint"] == str(tmp_path / "ckpt" / f"model.ckpt-{named_step}")
    assert sidecar["step"] == named_step
    assert checkpoint_holds_model(sidecar["checkpoint"], model)


def test_the_named_checkpoint_freezes_in_another_process_to_the_same_graph(tmp_path):
    model = mlp()
    x, y = rows(64)
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[
        CheckpointCallback(directory=str(tmp_path / "ckpt"), every_n_steps=12,
                           freeze={"output": str(tmp_path / "model.pb")}),
        earliest_is_best(),
    ])
    np.save(tmp_path / "probe.npy", PROBE)
    sidecar = json.loads((tmp_path / "model.pb.json").read_text())
    code = (
        "import numpy as np\n"
        "from tests.helpers import mlp\n"
        "from tfcheckpointer.config.schema import FreezeConfig\n"
        "from tfcheckpointer.graph.keras_checkpoint import freeze_keras_checkpoint\n"
        f"freeze_keras_checkpoint(mlp(), {sidecar['checkpoint']!r}, "
        f"FreezeConfig(output={str(tmp_path / 'again.pb')!r}))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=300)
    (again,) = run_in_tf1_session(tmp_path / "again.pb", {"features": PROBE}, ["dense_1"])
    np.testing.assert_allclose(again, model.predict(PROBE, verbose=0), atol=1e-6)


def lookup_model() -> keras.Model:
    """A model that cannot be frozen: a StringLookup holds a hash table."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((1,), dtype="string", name="words")
    ids = keras.layers.StringLookup(vocabulary=["a", "b", "c"])(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Embedding(5, 2)(ids)))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "mse")
    return model


def words() -> tuple[tf.Tensor, np.ndarray]:
    return tf.constant([["a"], ["b"], ["c"], ["d"]] * 4), np.ones((16, 1), "float32")


def test_an_unfreezable_model_is_refused_before_the_first_step(tmp_path):
    model = lookup_model()
    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=2, freeze={"output": str(tmp_path / "m.pb")}
    )
    with pytest.raises(
        FreezeError,
        match=r"cannot be frozen: it uses .*LookupTable.* \(checked before training; "
        r"freeze.required: false trains anyway",
    ):
        model.fit(*words(), batch_size=4, epochs=6, verbose=0, callbacks=[callback])
    assert model.optimizer.iterations.numpy() == 0
    assert not (tmp_path / "ckpt").exists()  # nothing was written


def test_freeze_required_false_trains_an_unfreezable_model_and_skips_the_freeze(tmp_path, caplog):
    model = lookup_model()
    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=2,
        freeze={"output": str(tmp_path / "m.pb"), "required": False},
    )
    model.fit(*words(), batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    assert steps_on_disk(tmp_path / "ckpt") == [2, 4]
    assert not (tmp_path / "m.pb").exists()
    assert any("training without a train-end freeze" in r.getMessage() for r in caplog.records)


def unwritable(tmp_path) -> str:
    """A freeze output whose directory is a file: the freeze can only fail once it writes."""
    (tmp_path / "blocked").write_text("a file, not a directory")
    return str(tmp_path / "blocked" / "model.pb")


def test_a_failed_train_end_freeze_keeps_the_checkpoints_and_the_history(tmp_path):
    model = mlp()
    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=8, freeze={"output": unwritable(tmp_path)}
    )
    x, y = rows(64)
    with pytest.raises(FreezeError, match="Cannot write") as raised:
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    assert steps_on_disk(tmp_path / "ckpt") == [8, 16]
    assert len(raised.value.history.history["loss"]) == 2
    assert model.history is raised.value.history


def test_freeze_required_false_returns_the_history_and_keeps_the_error(tmp_path):
    model = mlp()
    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=8,
        freeze={"output": unwritable(tmp_path), "required": False},
    )
    x, y = rows(64)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 2
    assert "Cannot write" in str(callback.freeze_error)
    assert steps_on_disk(tmp_path / "ckpt") == [8, 16]


def test_two_callbacks_on_one_directory_are_refused_naming_both(tmp_path):
    first = CheckpointCallback(directory=str(tmp_path), every_n_steps=4)
    second = CheckpointCallback(directory=str(tmp_path), every_n_steps=4)
    here = os.path.abspath(__file__)
    with pytest.raises(
        CheckpointError,
        match=rf"Two checkpoint writers on {tmp_path} in one process: CheckpointCallback created "
        rf"at {here}:\d+ and CheckpointCallback created at {here}:\d+; both would write",
    ):
        fit(mlp(), [first, second])
    assert steps_on_disk(tmp_path) == []


def test_a_new_callback_after_a_fit_that_died_takes_the_directory_over(tmp_path):
    class Die(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 5:
                raise RuntimeError("boom")

    model = mlp()
    with pytest.raises(RuntimeError, match="boom"):
        fit(model, [CheckpointCallback(directory=str(tmp_path), every_n_steps=4), Die()])
    fit(model, CheckpointCallback(directory=str(tmp_path), every_n_steps=4))
    assert steps_on_disk(tmp_path)[-1] == 14


def test_a_stateful_rnn_is_refused_before_the_first_step(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(batch_shape=(4, 3, 2)), keras.layers.LSTM(3, stateful=True), keras.layers.Dense(1)
    ])
    model.compile("sgd", "mse")
    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=2, freeze={"output": str(tmp_path / "m.pb")}
    )
    x = np.zeros((8, 3, 2), "float32")
    with pytest.raises(FreezeError, match=r"its inference pass writes variables \(AssignVariableOp\)"):
        model.fit(x, np.zeros((8, 1), "float32"), batch_size=4, verbose=0, callbacks=[callback])
    assert model.optimizer.iterations.numpy() == 0
