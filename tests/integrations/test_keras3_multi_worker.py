"""Keras 3's fit cannot train under MultiWorkerMirroredStrategy: the callback says so in one line."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers import mlp
from tfcheckpointer import BackendError, CheckpointCallback, Checkpointer

TWO_WORKERS = json.dumps({
    "cluster": {"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]},
    "task": {"type": "worker", "index": 0},
})


@pytest.fixture
def keras_3_on_two_workers(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", TWO_WORKERS)
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    # Another test of this process may have imported tf_keras, which would make it possible.
    monkeypatch.delitem(sys.modules, "tf_keras", raising=False)


def test_the_callback_names_the_upstream_issue_and_both_ways_that_work(keras_3_on_two_workers, tmp_path):
    with pytest.raises(BackendError, match=(
        r"^Keras 3's model.fit cannot train with MultiWorkerMirroredStrategy \(TF_CONFIG names 2 "
        r"workers\): upstream keras-team/keras issue 20585 \(https://github.com/keras-team/keras/"
        r"issues/20585\)\. HINT: train a tf_keras model \(pip install tf_keras; "
        r"TF_USE_LEGACY_KERAS=1\) with this callback, or write a custom training loop "
        r"checkpointed by tfcheckpointer.Checkpointer\.$"
    )):
        CheckpointCallback(directory=str(tmp_path), every_n_steps=2)
    assert not tmp_path.joinpath(".tfcheckpointer.lock").exists()


def test_tf_keras_is_let_through(keras_3_on_two_workers, monkeypatch, tmp_path):
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    CheckpointCallback(directory=str(tmp_path), every_n_steps=2)


def test_a_custom_loop_is_let_through(keras_3_on_two_workers, tmp_path):
    model = mlp()
    Checkpointer(model, directory=str(tmp_path), every_n_steps=2)


def test_one_worker_is_let_through(monkeypatch, tmp_path):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:2222"]},
                                                "task": {"type": "worker", "index": 0}}))
    monkeypatch.delitem(sys.modules, "tf_keras", raising=False)
    CheckpointCallback(directory=str(tmp_path), every_n_steps=2)
