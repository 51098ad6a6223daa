"""Checkpoints, frozen graphs and exports in object storage, against a real S3 server (moto) on 127.0.0.1."""

from __future__ import annotations

import glob
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading

import fsspec
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fit, mlp, rows, run_in_tf1_session
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.checkpoint.directory import CheckpointDirectory
from tfcheckpointer.checkpoint.storage import STAGING_PREFIX, local_copy
from tfcheckpointer.cli import main
from tfcheckpointer.errors import RestoreMismatchError
from tfcheckpointer.export import versions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def listing(url: str) -> list[str]:
    """Every object under `url`, relative to it."""
    fs = fsspec.filesystem("s3", use_listings_cache=False)
    base = url.removeprefix("s3://").rstrip("/")
    return sorted(path[len(base) + 1 :] for path in fs.find(base))


def staging_directories() -> set[str]:
    """The local staging and download directories there are now."""
    return set(glob.glob(os.path.join(tempfile.gettempdir(), STAGING_PREFIX + "*")))


def child(directory: str, tmp_path, *options: str) -> subprocess.Popen:
    """`tests/helpers/s3_child.py` in a fresh process with this test's environment (the server's).

    It saves its final weights to `tmp_path/weights.npz` and stages there
    (`TMPDIR`): a killed child cannot remove its staging directory.
    """
    return subprocess.Popen(
        [
            sys.executable, "-m", "tests.helpers.s3_child",
            directory, str(tmp_path / "weights.npz"), *options,
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )


def resumed(directory: str, **options) -> tuple[object, CheckpointCallback]:
    """A fresh model after the callback's train-begin restore from `directory`."""
    model = mlp()
    callback = CheckpointCallback(directory, every_n_steps=4, **options)
    callback.set_model(model)
    callback.on_train_begin()
    callback.manager.close()
    return model, callback


def checkpoint_files(step: int) -> list[str]:
    return [f"model.ckpt-{step}{tail}" for tail in (".data-00000-of-00001", ".index", ".meta")]


@pytest.mark.slow
def test_a_second_process_resumes_from_s3_then_freezes_and_exports(bucket, tmp_path, caplog):
    directory = f"{bucket}/run/ckpt"
    first = child(directory, tmp_path, "--every", "4")
    try:
        output, _ = first.communicate(timeout=180)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, output
    assert listing(directory) == ["checkpoint", "graph.pbtxt", *checkpoint_files(4), *checkpoint_files(8)]

    with caplog.at_level(logging.INFO, logger="tfcheckpointer"):
        model, _ = resumed(directory)
    assert f"Restored checkpoint step=8 path={directory}/model.ckpt-8 " in caplog.text
    stored = np.load(tmp_path / "weights.npz")
    for mine, theirs in zip(model.get_weights(), [stored[k] for k in stored.files]):
        np.testing.assert_array_equal(mine, theirs)

    callback = CheckpointCallback(
        directory, every_n_steps=4,
        freeze={"output": f"{bucket}/run/frozen.pb"}, export={"directory": f"{bucket}/serving"},
    )
    fit(model, callback)
    assert callback.manager.last_checkpoint == f"{directory}/model.ckpt-16"
    fs = fsspec.filesystem("s3", use_listings_cache=False)
    sidecar = json.loads(fs.cat_file(f"{bucket}/run/frozen.pb.json"))
    assert sidecar["checkpoint"] == f"{directory}/model.ckpt-16"
    fs.get_file(f"{bucket}/run/frozen.pb", str(tmp_path / "frozen.pb"))
    x, _ = rows(5)
    [frozen] = run_in_tf1_session(
        tmp_path / "frozen.pb", {sidecar["inputs"][0]["name"]: x}, [sidecar["outputs"][0]["name"]]
    )
    np.testing.assert_allclose(frozen, model.predict(x, verbose=0), atol=1e-6)
    assert listing(f"{bucket}/serving") == [
        "1/checkpoint/checkpoint", "1/checkpoint/model.ckpt-16.data-00000-of-00001",
        "1/checkpoint/model.ckpt-16.index",  # the weights a later run can start from
        "1/manifest.json", "1/model.pb", "1/saved_model.pb", "LATEST", "promotions.jsonl",
    ]
    assert versions.list_versions(f"{bucket}/serving") == [1]
    assert versions.read_latest(f"{bucket}/serving") == 1


@pytest.mark.slow
def test_a_kill_during_upload_leaves_the_newest_complete_checkpoint_resumable(bucket, tmp_path, caplog):
    directory = f"{bucket}/run/ckpt"
    killed = child(directory, tmp_path, "--every", "2", "--stall-index-at", "4")
    watchdog = threading.Timer(180, killed.kill)  # a child that never stalls ends the loop below
    watchdog.start()
    try:
        for line in killed.stdout:
            if line.strip() == "stalled":
                break
        else:
            raise AssertionError("the child ended before uploading the index of step 4")
        killed.send_signal(signal.SIGKILL)
    finally:
        watchdog.cancel()
        killed.kill()
        killed.wait(timeout=30)
        killed.stdout.close()
    # Step 4's data and .meta went up, its index did not: the state file still names step 2.
    assert listing(directory) == [
        "checkpoint", "graph.pbtxt", *checkpoint_files(2),
        "model.ckpt-4.data-00000-of-00001", "model.ckpt-4.meta",
    ]
    remote = CheckpointDirectory(directory, "model.ckpt")
    assert remote.candidates() == [f"{directory}/model.ckpt-2"]
    assert remote.read_state().model_checkpoint_path == "model.ckpt-2"
    with local_copy(f"{directory}/model.ckpt-2") as local:
        assert tf.train.load_checkpoint(local).get_tensor("global_step") == 2

    with caplog.at_level(logging.INFO, logger="tfcheckpointer"):
        resumed(directory)
    assert f"Restored checkpoint step=2 path={directory}/model.ckpt-2 " in caplog.text
    # The orphaned files of the killed upload are removed once the run has resumed.
    assert listing(directory) == ["checkpoint", "graph.pbtxt", *checkpoint_files(2)]


def test_retention_deletes_remote_checkpoints_also_those_of_an_earlier_run(bucket):
    directory = f"{bucket}/ckpt"
    fit(mlp(), CheckpointCallback(directory, every_n_steps=2, max_to_keep=3))
    assert listing(directory) == [
        "checkpoint", "graph.pbtxt", *checkpoint_files(4), *checkpoint_files(6), *checkpoint_files(8),
    ]
    model, _ = resumed(directory)
    fit(model, CheckpointCallback(directory, every_n_steps=2, max_to_keep=1), rows(16))
    assert listing(directory) == ["checkpoint", "graph.pbtxt", *checkpoint_files(10)]
    state = CheckpointDirectory(directory, "model.ckpt").read_state()
    assert list(state.all_model_checkpoint_paths) == ["model.ckpt-10"]


def test_an_export_version_without_its_manifest_is_not_a_version(bucket, tmp_path):
    serving = f"{bucket}/serving"
    fs = fsspec.filesystem("s3", use_listings_cache=False)
    # Version 1 is committed; the upload of version 2 died before its manifest went up.
    fs.pipe_file(f"{serving}/1/model.pb", b"1")
    fs.pipe_file(f"{serving}/1/manifest.json", b"{}")
    fs.pipe_file(f"{serving}/2/model.pb", b"half")
    assert versions.list_versions(serving) == [1]

    def build(directory: str, version: int) -> None:
        for name in ("model.pb", "manifest.json"):
            with open(os.path.join(directory, name), "w") as f:
                f.write(f"v{version}")

    assert versions.publish_version(serving, build) == (2, f"{serving}/2")
    assert fs.cat_file(f"{serving}/2/model.pb") == b"v2"
    assert versions.list_versions(serving) == [1, 2]
    assert main(["promote", serving, "--version", "2"]) == 0
    assert versions.read_latest(serving) == 2
    assert versions.prune_versions(serving, keep=1) == [1]
    assert listing(serving) == ["2/manifest.json", "2/model.pb", "LATEST", "promotions.jsonl"]
    assert [entry["to"] for entry in versions.read_promotions(serving)] == [2]


def test_a_run_starts_from_a_checkpoint_in_another_s3_directory(bucket, caplog):
    source = f"{bucket}/earlier"
    trained = mlp()
    fit(trained, CheckpointCallback(source, every_n_steps=8))
    with caplog.at_level(logging.INFO, logger="tfcheckpointer"):
        model, _ = resumed(f"{bucket}/new", restore=f"{source}/model.ckpt-8")
    assert f"Restored checkpoint step=8 path={source}/model.ckpt-8 warm_start=True" in caplog.text
    for mine, theirs in zip(model.trainable_weights, trained.trainable_weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_a_mismatched_s3_checkpoint_is_named_by_its_url(bucket):
    import keras

    directory = f"{bucket}/ckpt"
    fit(mlp(), CheckpointCallback(directory, every_n_steps=8))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    other.compile("adam", "mse")
    callback = CheckpointCallback(directory, every_n_steps=8)
    callback.set_model(other)
    with pytest.raises(RestoreMismatchError, match=rf"^Checkpoint {directory}/model.ckpt-8 does not match"):
        callback.on_train_begin()


def test_the_tf1_session_hook_saves_to_s3_and_resumes_from_it(bucket):
    from tests.integrations.test_hook import train

    directory = f"{bucket}/ckpt"
    before = staging_directories()
    train(directory, 6, every_n_steps=3)
    assert listing(directory) == ["checkpoint", "graph.pbtxt", *checkpoint_files(3), *checkpoint_files(6)]
    train(directory, 9, every_n_steps=3)
    assert staging_directories() == before  # the staged saves and the restored copy are gone
    assert CheckpointDirectory(directory, "model.ckpt").latest() == f"{directory}/model.ckpt-9"
    with local_copy(f"{directory}/model.ckpt-9") as local:
        assert tf.train.load_checkpoint(local).get_tensor("global_step") == 9


def _commit_version(fs, serving: str, version: int, manifest: dict) -> None:
    fs.pipe_file(f"{serving}/{version}/model.pb", b"graph")
    fs.pipe_file(f"{serving}/{version}/manifest.json", json.dumps(manifest).encode())


def test_the_champion_in_an_s3_export_directory_is_read_from_its_manifest(bucket):
    from tfcheckpointer.export.champion import find_champion

    serving = f"{bucket}/serving"
    fs = fsspec.filesystem("s3", use_listings_cache=False)
    signature = {"inputs": [{"name": "x:0", "dtype": "float32", "shape": [None, 4]}],
                 "outputs": [{"name": "y:0", "dtype": "float32", "shape": [None, 1]}]}
    _commit_version(fs, serving, 1, {
        "signature": signature,
        "evaluation": {"examples": 5, "figures": {"loss": 0.25}},
    })
    fs.pipe_file(f"{serving}/LATEST", b"1\n")
    champion = find_champion(serving)
    assert champion.problem is None
    assert champion.graph == f"{serving}/1/model.pb"
    assert champion.recorded == {"loss": 0.25}


def test_warm_start_reads_the_versions_of_an_s3_export_directory(bucket):
    from tfcheckpointer.config.schema import ExportConfig
    from tfcheckpointer.export import warm_start

    run, serving = f"{bucket}/run", f"{bucket}/serving"
    fs = fsspec.filesystem("s3", use_listings_cache=False)
    for step in (2, 4):
        for tail in (".data-00000-of-00001", ".index"):
            fs.pipe_file(f"{run}/model.ckpt-{step}{tail}", b"x")
    fs.pipe_file(f"{run}/checkpoint", b'model_checkpoint_path: "model.ckpt-4"\n')
    # Version 1 (step 2, with its checkpoint copy) is promoted; version 2 (step 4) was not.
    _commit_version(fs, serving, 1, {
        "checkpoint": f"{run}/model.ckpt-2", "step": 2,
        "checkpoint_copy": {"prefix": "checkpoint/model.ckpt-2", "hard_linked": False},
    })
    fs.pipe_file(f"{serving}/1/checkpoint/model.ckpt-2.index", b"x")
    _commit_version(fs, serving, 2, {"checkpoint": f"{run}/model.ckpt-4", "step": 4})
    fs.pipe_file(f"{serving}/LATEST", b"1\n")
    plan = warm_start.read_start_plan(
        ExportConfig(directory=serving), CheckpointDirectory(run, "model.ckpt")
    )
    assert (plan.action, plan.version, plan.prefix) == (
        warm_start.FROM_PROMOTED, 1, f"{serving}/1/checkpoint/model.ckpt-2"
    )


@pytest.mark.slow
def test_the_promote_if_gate_judges_a_champion_in_s3_against_a_graph_frozen_to_s3(bucket):
    serving = f"{bucket}/serving"
    for run in (1, 2):
        callback = CheckpointCallback(
            f"{bucket}/ckpt-{run}", every_n_steps=1000,
            freeze={"output": f"{bucket}/model-{run}.pb"},
            export={"directory": serving, "promote_if": {"monitor": "loss"}},
            validation_data=rows(8, seed=3),
        )
        fit(mlp(seed=run), callback)
    champion = callback.exported.manifest["champion"]
    assert (champion["champion_version"], champion["comparison"]) == (1, "same data")


class _Dies(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        raise KeyboardInterrupt("killed")


def test_a_fit_that_dies_after_resuming_from_s3_leaves_no_download_behind(bucket):
    directory = f"{bucket}/ckpt"
    fit(mlp(), CheckpointCallback(directory, every_n_steps=8))
    before = staging_directories()
    callback = CheckpointCallback(directory, every_n_steps=8)
    with pytest.raises(KeyboardInterrupt):
        fit(mlp(), [callback, _Dies()])  # no on_train_end: the manager is never closed
    assert callback.started_from == 8
    assert staging_directories() == before
