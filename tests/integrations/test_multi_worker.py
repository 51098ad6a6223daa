"""Real multi-device jobs: two MultiWorkerMirroredStrategy workers on 127.0.0.1, and MirroredStrategy.

Each test starts both workers on free ports, bounds them in time and always
reaps them. `fit` is a tf_keras model in `model.fit` (Keras 3's `fit` cannot
train on several workers); `loop` a Keras 3 model in a custom loop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import steps_on_disk

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180  # seconds a whole job may take on a loaded 2-core machine

pytestmark = pytest.mark.slow


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Job:
    """Both workers of one run; their output goes to files (a full pipe would stall them)."""

    def __init__(self, tmp_path: Path, mode: str, directory: Path, *args: str):
        self.logs = [tmp_path / f"{mode}-{time.monotonic_ns()}-worker{i}.log" for i in range(2)]
        ports = ",".join(map(str, free_ports(2)))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        env.pop("TF_CONFIG", None)
        self.workers = []
        for index, log in enumerate(self.logs):
            with open(log, "wb") as out:
                self.workers.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.helpers.multi_worker_child", mode, str(index),
                     ports, str(directory), *args],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                ))

    def output(self, index: int) -> str:
        return self.logs[index].read_text()

    def wait(self) -> list[int]:
        deadline = time.monotonic() + TIMEOUT
        return [w.wait(timeout=max(1.0, deadline - time.monotonic())) for w in self.workers]

    def wait_for(self, index: int, line: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while line not in self.output(index).splitlines():
            assert time.monotonic() < deadline, f"no {line!r} from worker {index}"
            assert self.workers[index].poll() is None, self.output(index)
            time.sleep(0.05)

    def kill(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()


@contextlib.contextmanager
def job(tmp_path: Path, mode: str, directory: Path, *args: str) -> Iterator[Job]:
    running = Job(tmp_path, mode, directory, *args)
    try:
        yield running
    finally:
        running.kill()  # reaped whatever happened, so no worker outlives its test


def run(tmp_path: Path, mode: str, directory: Path, *args: str) -> Job:
    with job(tmp_path, mode, directory, *args) as done:
        codes = done.wait()
        assert codes == [0, 0], done.output(0) + done.output(1)
    return done


def frozen_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    from tfcheckpointer.graph.files import read_graph_def

    with tf.Graph().as_default() as graph:
        (output,) = tf.compat.v1.import_graph_def(
            read_graph_def(str(path)), return_elements=["output/predict:0"], name=""
        )
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(output, {"inputs/X:0": x})


CHIEF_FILES = {
    ".tfcheckpointer.lock", "checkpoint", "graph.pbtxt", "frozen.pb", "frozen.pb.json",
    *(f"model.ckpt-{s}{suffix}" for s in (4, 8)
      for suffix in (".index", ".data-00000-of-00001", ".meta")),
}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Job, Path]:
    """One 2-worker `fit` of 8 steps, shared by the tests that only read what it left."""
    tmp_path = tmp_path_factory.mktemp("fit")
    return run(tmp_path, "fit", tmp_path / "ckpt"), tmp_path / "ckpt"


def test_fit_writes_from_the_chief_only(fitted):
    first, directory = fitted
    assert [first.output(i).splitlines()[-1] for i in (0, 1)] == ["done 8", "done 8"]
    assert {p.name for p in directory.iterdir()} == CHIEF_FILES
    assert "Saved checkpoint" not in first.output(1)


def test_a_restart_of_both_workers_resumes_at_the_saved_step(fitted, tmp_path):
    directory = tmp_path / "ckpt"
    shutil.copytree(fitted[1], directory)
    second = run(tmp_path, "fit", directory)
    for index in (0, 1):
        lines = second.output(index).splitlines()
        assert "started_from 8" in lines and lines[-1] == "done 16"
    assert "Took the chief's restored state (step 8)." in second.output(1)
    assert steps_on_disk(directory)[-2:] == [12, 16]


def test_a_restore_the_chief_refuses_stops_both_workers(fitted, tmp_path):
    directory = tmp_path / "ckpt"
    shutil.copytree(fitted[1], directory)
    with job(tmp_path, "fit", directory, "--restore", "none") as refused:
        assert refused.wait() == [1, 1]
    assert "checkpoint.restore is none, but" in refused.output(0)
    assert "The chief refused to restore into" in refused.output(1)
    assert steps_on_disk(directory) == [4, 8]


def test_the_chiefs_frozen_graph_equals_a_single_worker_freeze_of_its_checkpoint(fitted, tmp_path):
    directory = fitted[1]
    # The .meta route, in one plain process: the checkpoint's weights (BatchNormalization's
    # statistics averaged over the workers), frozen without any strategy.
    single = tmp_path / "single.pb"
    subprocess.run(
        [sys.executable, "-m", "tfcheckpointer", "freeze", "--meta",
         str(directory / "model.ckpt-8.meta"), "--checkpoint", str(directory / "model.ckpt-8"),
         "-o", str(single), "--input-names", "inputs/X", "--output-names", "output/predict"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, timeout=TIMEOUT,
        capture_output=True,
    )
    x = np.random.default_rng(3).standard_normal((16, 4)).astype("float32")
    np.testing.assert_array_equal(
        frozen_outputs(directory / "frozen.pb", x), frozen_outputs(single, x)
    )


def test_a_custom_loop_writes_nothing_from_the_other_worker_and_resumes(tmp_path):
    first = run(tmp_path, "loop", tmp_path, "--per-worker")
    assert [first.output(i).splitlines()[-1] for i in (0, 1)] == ["done 8", "done 8"]
    assert {p.name for p in (tmp_path / "worker0").iterdir()} == CHIEF_FILES
    assert not (tmp_path / "worker1").exists()

    second = run(tmp_path, "loop", tmp_path, "--per-worker")
    for index in (0, 1):
        lines = second.output(index).splitlines()
        assert "started_from 8" in lines and lines[-1] == "done 16"
    assert not (tmp_path / "worker1").exists()


def test_sigterm_to_one_worker_leaves_a_checkpoint_both_resume_from(tmp_path):
    directory = tmp_path / "ckpt"
    # Also saves every 0.3 s: on the chief's clock, agreed by both, never a hang.
    args = ("--epochs", "50", "--sleep", "0.1", "--every-seconds", "0.3")
    with job(tmp_path, "fit", directory, *args) as stopped:
        stopped.wait_for(1, "step 6")
        stopped.workers[1].send_signal(signal.SIGTERM)
        assert stopped.wait() == [-signal.SIGTERM, -signal.SIGTERM]
    saved = steps_on_disk(directory)[-1]
    assert saved > 6
    assert f"Stopping at step {saved} on SIGTERM." in stopped.output(0)
    assert "Another worker received SIGTERM" in stopped.output(0)

    resumed = run(tmp_path, "fit", directory, "--epochs", "1")
    for index in (0, 1):
        lines = resumed.output(index).splitlines()
        assert f"started_from {saved}" in lines and lines[-1] == f"done {saved + 4}"


def test_mirrored_strategy_on_two_devices_resumes_with_a_meta(tmp_path):
    """One worker, two replicas: the Saver refuses MirroredVariables, so the restore assigns."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    outputs = [
        subprocess.run(
            [sys.executable, "-m", "tests.helpers.mirrored_child", str(tmp_path)], cwd=ROOT,
            env=env, check=True, timeout=TIMEOUT, capture_output=True, text=True,
        ).stdout.splitlines()
        for _ in range(2)
    ]
    assert outputs == [["started_from 0", "done 4"], ["started_from 4", "done 8"]]
    assert (tmp_path / "model.ckpt-8.meta").exists()
