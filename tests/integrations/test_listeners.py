"""Listeners in real training: told after each checkpoint is complete, never undoing it."""

from __future__ import annotations

import logging
import threading

import tensorflow as tf

from tests.helpers import fit, mlp, steps_on_disk
from tests.integrations.test_hook import X, Y, build_graph
from tfcheckpointer import CheckpointListener
from tfcheckpointer.integrations.keras_callback import CheckpointCallback
from tfcheckpointer.integrations.session_hook import CheckpointSessionHook


class Opener(CheckpointListener):
    """Opens each checkpoint it is told about, as an uploader would read it."""

    def __init__(self):
        self.saves = []
        self.freezes = []
        self.threads = set()

    def after_save(self, step, prefix):
        self.threads.add(threading.current_thread().name)
        reader = tf.train.load_checkpoint(prefix)  # fails on a partial checkpoint
        self.saves.append((step, prefix, int(reader.get_tensor("global_step"))))

    def after_freeze(self, path, sidecar):
        with open(path, "rb") as graph, open(sidecar) as description:
            self.freezes.append((path, len(graph.read()) > 0, '"sha256"' in description.read()))


class Broken(CheckpointListener):
    def after_save(self, step, prefix):
        raise RuntimeError(f"upload of step {step} failed")


def _expected(directory, steps):
    return [(step, str(directory / f"model.ckpt-{step}"), step) for step in steps]


def test_a_fit_tells_the_listener_each_complete_checkpoint_and_the_frozen_graph(tmp_path):
    opener = Opener()
    callback = CheckpointCallback(
        directory=str(tmp_path), every_n_steps=3, max_to_keep=None,
        freeze={"output": str(tmp_path / "m.pb")}, listeners=[opener],
    )
    fit(mlp(), callback)  # 8 steps
    assert steps_on_disk(tmp_path) == [3, 6, 8]
    assert opener.saves == _expected(tmp_path, [3, 6, 8])
    assert opener.freezes == [(str(tmp_path / "m.pb"), True, True)]
    assert opener.threads == {threading.current_thread().name}


def test_async_saves_tell_the_listener_from_the_writer_thread_once_complete(tmp_path):
    opener = Opener()
    callback = CheckpointCallback(
        directory=str(tmp_path), every_n_steps=3, max_to_keep=None, async_save=True,
        listeners=[opener],
    )
    fit(mlp(), callback)
    assert opener.saves == _expected(tmp_path, [3, 6, 8])
    assert opener.threads == {"tfcheckpointer-writer"}


def test_a_raising_listener_is_reported_and_training_and_the_next_listener_go_on(tmp_path, caplog):
    opener = Opener()
    callback = CheckpointCallback(
        directory=str(tmp_path), every_n_steps=4, listeners=[Broken(), opener],
    )
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        fit(mlp(), callback)
    assert steps_on_disk(tmp_path) == [4, 8]
    assert opener.saves == _expected(tmp_path, [4, 8])
    assert [m for m in caplog.messages if m.startswith("Listener")] == [
        f"Listener Broken failed in after_save({step}, '{tmp_path}/model.ckpt-{step}'): "
        f"RuntimeError: upload of step {step} failed -- the checkpoint stays."
        for step in (4, 8)
    ]


def test_the_tf1_hook_tells_the_job_files_listeners_then_the_given_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job_listeners.py").write_text(
        "class Files:\n"
        "    def after_save(self, step, prefix):\n"
        "        open(f'save-{step}', 'w').write(prefix)\n"
    )
    opener = Opener()
    hook = CheckpointSessionHook.from_dict(
        {"checkpoint": {"directory": str(tmp_path / "ckpt"), "every_n_steps": 3},
         "freeze": {"output": str(tmp_path / "m.pb"), "input_names": ["inputs/X"],
                    "output_names": ["output/predict"]},
         "listeners": ["job_listeners:Files"]},
        listeners=[opener],
    )
    assert [n.name for n in hook.manager.listeners.listeners] == ["job_listeners:Files", "Opener"]
    graph, train_op, inputs, targets, _ = build_graph()
    with graph.as_default():
        stop = tf.compat.v1.train.StopAtStepHook(last_step=6)
        with tf.compat.v1.train.MonitoredTrainingSession(hooks=[hook, stop]) as session:
            while not session.should_stop():
                session.run(train_op, {inputs: X, targets: Y})
    assert opener.saves == _expected(tmp_path / "ckpt", [3, 6])
    assert opener.freezes == [(str(tmp_path / "m.pb"), True, True)]
    assert (tmp_path / "save-3").read_text() == str(tmp_path / "ckpt" / "model.ckpt-3")
    assert (tmp_path / "save-6").exists()
