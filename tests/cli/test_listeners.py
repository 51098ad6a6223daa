"""`listeners:` in a job file, through `tfcheckpointer train` as a user runs it."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import MY_FACTORIES, run_cli
from tfcheckpointer.cli import main

MY_LISTENERS = """\
import json


class Events:
    def __init__(self, directory):
        self.directory = directory

    def after_save(self, step, prefix):
        import tensorflow as tf

        saved = int(tf.train.load_checkpoint(prefix).get_tensor("global_step"))
        self._write(f"save-{step}", {"prefix": prefix, "global_step": saved})

    def after_freeze(self, path, sidecar):
        self._write("freeze", {"path": path, "sidecar": sidecar})

    def _write(self, name, content):
        with open(f"{self.directory}/{name}.json", "w") as f:
            json.dump(content, f)


class Broken:
    def after_save(self, step, prefix):
        raise ConnectionError("tracker down")


def broken():
    return Broken()


def failing(token):
    raise KeyError(token)
"""

JOB = """\
checkpoint: {directory: ckpt, every_n_steps: 1, max_to_keep: null}
freeze: {output: m.pb}
model: {factory: 'my_factories:build'}
data: {factory: 'my_factories:load'}
fit: {epochs: 1, batch_size: 8}
"""


@pytest.fixture
def job(tmp_path):
    (tmp_path / "my_factories.py").write_text(MY_FACTORIES)
    (tmp_path / "my_listeners.py").write_text(MY_LISTENERS)
    (tmp_path / "events").mkdir()
    return tmp_path


def test_train_tells_the_listeners_of_the_job_file(job):
    (job / "job.yaml").write_text(
        JOB + "listeners:\n  - my_listeners:broken\n"
        "  - {factory: my_listeners:Events, kwargs: {directory: events}}\n"
    )
    result = run_cli("train", "job.yaml", cwd=job)
    assert result.returncode == 0, result.stderr
    for step in (1, 2):  # 16 rows, batches of 8
        assert json.loads((job / "events" / f"save-{step}.json").read_text()) == {
            "prefix": f"ckpt/model.ckpt-{step}", "global_step": step,
        }
        assert (
            f"Listener my_listeners:broken failed in after_save({step}, 'ckpt/model.ckpt-{step}'): "
            "ConnectionError: tracker down -- the checkpoint stays." in result.stderr
        )
    assert json.loads((job / "events" / "freeze.json").read_text()) == {
        "path": "m.pb", "sidecar": "m.pb.json",
    }
    assert sorted(p.name for p in (job / "events").iterdir()) == [
        "freeze.json", "save-1.json", "save-2.json",
    ]


@pytest.mark.parametrize(
    "listeners, message",
    [
        ("[my_listeners:Nothing]",
         "job.yaml: listeners[0].factory: module 'my_listeners' has no attribute 'Nothing'"),
        ("[{factory: my_listeners:failing, kwargs: {token: SLACK}}]",
         "job.yaml: listeners[0].factory: the factory 'my_listeners:failing' raised "
         "KeyError: 'SLACK' HINT: it is called with its kwargs when the job starts and must "
         "return a listener"),
    ],
)
def test_a_bad_listener_stops_train_with_exit_2_before_anything_is_written(job, listeners, message):
    (job / "job.yaml").write_text(JOB + f"listeners: {listeners}\n")
    result = run_cli("train", "job.yaml", cwd=job)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"tfcheckpointer: error: {message}"
    assert not (job / "ckpt").exists() and not (job / "m.pb").exists()


def test_a_malformed_listener_entry_names_its_line(tmp_path, capsys):
    (tmp_path / "job.yaml").write_text(
        "checkpoint: {directory: x, every_n_steps: 1}\nlisteners:\n  - my_listeners:Events\n"
        "  - my_listeners.Events\n"
    )
    assert main(["validate", str(tmp_path / "job.yaml")]) == 2
    assert capsys.readouterr().err == (
        f"tfcheckpointer: error: {tmp_path}/job.yaml:4: listeners[1]: expected "
        "'package.module:function', got 'my_listeners.Events' (str)\n"
    )
