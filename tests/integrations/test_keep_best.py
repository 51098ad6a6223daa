"""`checkpoint.keep_best` in real training: the best epoch's checkpoint outlives `max_to_keep`,
a restart in a fresh process, and is what `tfcheckpointer freeze --checkpoint best` freezes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import run_in_tf1_session, steps_on_disk
from tests.helpers.linear import features
from tfcheckpointer.config import load_config
from tfcheckpointer.integrations.job import run_job

ROOT = Path(__file__).resolve().parents[2]

# 16 rows in batches of 8: epoch e ends at step 2e, where a checkpoint is due. The loss
# falls every epoch, so with mode: max the first epoch is the best.
JOB = """\
checkpoint:
  directory: {directory}/ckpt
  every_n_steps: 2
  max_to_keep: 1
  keep_best: {{k: 1, monitor: val_loss, mode: max}}
freeze: {{output: {directory}/best.pb, at_train_end: false}}
model: {{factory: 'tests.helpers.linear:build_model'}}
data: {{factory: 'tests.helpers.linear:load_data'}}
fit: {{epochs: 3, batch_size: 8, shuffle: false}}
"""


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tfcheckpointer", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, dict[str, list[float]]]:
    """The job trained once for 3 epochs: its directory, job file and fit history."""
    directory = tmp_path_factory.mktemp("keep_best")
    job = directory / "job.yaml"
    job.write_text(JOB.format(directory=directory))
    history = run_job(load_config(job), quiet=True).history
    assert history["val_loss"] == sorted(history["val_loss"], reverse=True)  # the premise
    return directory, job, history


def test_the_best_epoch_outlives_max_to_keep_beside_the_newest(trained):
    directory, _, history = trained
    assert steps_on_disk(directory / "ckpt") == [2, 6]
    scores = json.loads((directory / "ckpt" / "scores.json").read_text())["checkpoints"]
    assert scores["model.ckpt-2"]["epoch"] == 1
    assert scores["model.ckpt-2"]["metrics"]["val_loss"] == pytest.approx(history["val_loss"][0])


def test_a_restart_in_a_fresh_process_keeps_the_recorded_best(trained, tmp_path):
    directory, job, _ = trained
    copy = tmp_path / "ckpt"
    shutil.copytree(directory / "ckpt", copy)
    result = run_cli("train", str(job), "--quiet", "--set", f"checkpoint.directory={copy}")
    assert result.returncode == 0, result.stderr
    # Resumed at step 6, three more epochs: 8, 10, 12; each pushed out the one before, not step 2.
    assert steps_on_disk(copy) == [2, 12]
    scores = json.loads((copy / "scores.json").read_text())["checkpoints"]
    assert list(scores) == ["model.ckpt-2", "model.ckpt-12"]
    assert scores["model.ckpt-2"]["metrics"]["val_loss"] > scores["model.ckpt-12"]["metrics"]["val_loss"]


def test_freeze_best_in_a_fresh_process_freezes_the_best_checkpoint(trained):
    directory, job, history = trained
    result = run_cli("freeze", str(job), "--checkpoint", "best")
    assert result.returncode == 0, result.stderr
    best = f"{directory}/ckpt/model.ckpt-2"
    assert result.stdout.startswith(f"Froze {best} (step 2) into {directory}/best.pb")
    sidecar = json.loads((directory / "best.pb.json").read_text())
    assert (sidecar["checkpoint"], sidecar["step"]) == (best, 2)
    assert sidecar["score"]["monitor"] == "val_loss" and sidecar["score"]["epoch"] == 1
    assert sidecar["score"]["value"] == pytest.approx(history["val_loss"][0])
    # The frozen graph computes with the best checkpoint's weights, not the newest's.
    x = features(5, seed=9)
    (frozen,) = run_in_tf1_session(directory / "best.pb", {"features": x}, ["out"])

    def outputs_of(prefix: str) -> np.ndarray:
        reader = tf.train.load_checkpoint(prefix)
        return x @ reader.get_tensor("out/kernel") + reader.get_tensor("out/bias")

    np.testing.assert_allclose(frozen, outputs_of(best), rtol=1e-6, atol=1e-6)
    assert not np.allclose(frozen, outputs_of(f"{directory}/ckpt/model.ckpt-6"), atol=1e-3)

