"""After a restore, in a new process, the model computes what the model that wrote the checkpoint computed.

One child process trains each model of `derived_models` (its derived layer
set from data, mean about 3) and writes its outputs on fixed inputs; this
process builds the same models without that, restores them every way the
package restores (resume, warm start, `tfcheckpointer freeze CONFIG`, the
`.meta` written by a resumed run) and compares with the child's outputs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_in_tf1_session
from tests.helpers.derived_models import FREEZE, KINDS, build, data, probe
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.cli import main

ROOT = Path(__file__).resolve().parents[2]
ATOL = 1e-5


def child(*args: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.helpers.derived_child", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """Per kind: `run` (checkpoints 2 and 4), `at2` (checkpoint 2), `out2.npy`, `out4.npy`."""
    root = tmp_path_factory.mktemp("trained")
    child("train", str(root))
    return root


def frozen_outputs(path) -> np.ndarray:
    return run_in_tf1_session(path, {"inputs/X": probe()}, ["output/y"])[0]


def fit_on(model, callback, *, epochs: int, initial_epoch: int = 0) -> None:
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=[callback])


@pytest.fixture(scope="module", params=KINDS)
def resumed(request, trained, tmp_path_factory):
    """Each kind resumed from step 2 in this process, trained to step 4 and frozen at train end."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    tf.config.experimental.enable_op_determinism()
    try:
        kind = request.param
        root = tmp_path_factory.mktemp(f"resumed_{kind}")
        shutil.copytree(trained / kind / "at2", root / "run")
        model = build(kind)
        callback = CheckpointCallback(
            directory=str(root / "run"), every_n_steps=2,
            freeze={"output": str(root / "frozen.pb"), **FREEZE},
        )
        fit_on(model, callback, epochs=2, initial_epoch=1)
    finally:
        tf_config.disable_op_determinism()  # other tests use unseeded random ops
    return model, root, np.load(trained / kind / "out4.npy")


def test_a_resumed_model_trains_on_as_the_trained_one_did(resumed):
    model, _, expected = resumed
    np.testing.assert_allclose(model(probe(), training=False).numpy(), expected, atol=ATOL)


def test_the_train_end_graph_of_a_resumed_run_computes_what_the_trained_model_did(resumed):
    _, root, expected = resumed
    np.testing.assert_allclose(frozen_outputs(root / "frozen.pb"), expected, atol=ATOL)


def test_the_meta_a_resumed_run_writes_freezes_to_what_the_trained_model_did(resumed):
    _, root, expected = resumed
    meta = root / "run" / "model.ckpt-4.meta"
    assert main(["freeze", "--meta", str(meta), "-o", str(root / "meta.pb")]) == 0
    np.testing.assert_allclose(frozen_outputs(root / "meta.pb"), expected, atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
def test_a_warm_started_model_computes_what_the_trained_one_did(trained, tmp_path, kind):
    callback = CheckpointCallback(
        directory=str(tmp_path / "new"), every_n_steps=2,
        restore=str(trained / kind / "run" / "model.ckpt-2"),
        freeze={"output": str(tmp_path / "frozen.pb"), **FREEZE},
    )
    fit_on(build(kind), callback, epochs=0)
    np.testing.assert_allclose(
        frozen_outputs(tmp_path / "frozen.pb"), np.load(trained / kind / "out2.npy"), atol=ATOL
    )


@pytest.mark.parametrize("kind", KINDS)
def test_freeze_from_a_job_file_computes_what_the_trained_model_did(trained, tmp_path, kind):
    job = tmp_path / "job.yaml"
    job.write_text(
        f"checkpoint:\n  directory: {trained / kind / 'run'}\n  every_n_steps: 2\n"
        f"model:\n  factory: tests.helpers.derived_models:build\n  kwargs: {{kind: {kind}}}\n"
        f"freeze:\n  output: {tmp_path / 'frozen.pb'}\n"
        f"  input_names: [inputs/X]\n  output_names: [output/y]\n"
    )
    assert main(["freeze", str(job)]) == 0
    np.testing.assert_allclose(
        frozen_outputs(tmp_path / "frozen.pb"), np.load(trained / kind / "out4.npy"), atol=ATOL
    )


# --- A refused resume changes nothing on disk -----------------------------------------------------


def tree(root: Path) -> dict[str, str]:
    """Every file and directory under `root`, with each file's SHA-256."""
    listing = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        listing[relative] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return listing


def test_a_refused_resume_leaves_every_directory_as_it_was(trained, tmp_path):
    resume = tmp_path / "resume"  # a crashed save's leftover and an unreadable newest checkpoint
    shutil.copytree(trained / "normalization" / "run", resume)
    (resume / "model.ckpt-6.tfcheckpointer-tmp.index").write_bytes(b"half written")
    (resume / "model.ckpt-4.index").write_bytes(b"\0" * 10)
    unlocked = tmp_path / "unlocked"  # checkpoints without a lock file
    shutil.copytree(trained / "normalization" / "at2", unlocked)
    (unlocked / ".tfcheckpointer.lock").unlink()
    warm = tmp_path / "new" / "deeper"  # a warm start into a directory not made yet
    source = trained / "normalization" / "at2" / "model.ckpt-2"
    before = tree(tmp_path)

    printed = child("refuse", str(resume), str(unlocked), f"{warm}={source}")

    assert printed.splitlines() == [
        f"refused: Checkpoint {resume}/model.ckpt-2 does not match the model.",
        f"refused: Checkpoint {unlocked}/model.ckpt-2 does not match the model.",
        f"refused: Checkpoint {source} does not match the model.",
    ]
    assert tree(tmp_path) == before


def test_a_model_built_by_its_first_step_trains_on_with_the_restored_state(tmp_path):
    """The first step traced the train function with the un-restored mean; it is traced again."""
    import keras

    rng = np.random.default_rng(3)
    x = rng.normal(3.0, 2.0, (32, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)

    def no_input_model(sample: np.ndarray) -> keras.Model:
        keras.utils.set_random_seed(1)
        norm = keras.layers.Normalization()
        norm.adapt(sample)
        model = keras.Sequential([norm, keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.0), "mse")  # no update: only the state matters
        return model

    first = no_input_model(x)
    first.fit(x, y, batch_size=32, verbose=0,
              callbacks=[CheckpointCallback(directory=str(tmp_path), every_n_steps=1)])
    expected = float(first.evaluate(x, y, verbose=0))
    resumed = no_input_model(-x)  # adapted to other data; the restore must win
    history = resumed.fit(
        x, y, batch_size=32, epochs=3, verbose=0, validation_data=(x, y),
        callbacks=[CheckpointCallback(directory=str(tmp_path), every_n_steps=1)],
    )
    # Step 1 ran before the restore; every later step must compute with the restored mean.
    np.testing.assert_allclose(history.history["loss"][1:], [expected] * 2, rtol=1e-5)
    np.testing.assert_allclose(history.history["val_loss"], [expected] * 3, rtol=1e-5)
