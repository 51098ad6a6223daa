"""Crash safety with real processes, signals, full disks and locked directories."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import fit, mlp, rows, steps_on_disk
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.config import CheckpointConfig
from tfcheckpointer.errors import CheckpointError, RestoreMismatchError
from tfcheckpointer.checkpoint.keys import checkpoint_variables
from tfcheckpointer.checkpoint.lock import DirectoryLock, DirectoryLockedError
from tfcheckpointer.checkpoint.manager import CheckpointManager
from tfcheckpointer.checkpoint.variables import make_saver

ROOT = Path(__file__).resolve().parents[2]
CHILD = str(ROOT / "tests" / "helpers" / "train_child.py")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def start_child(directory, *args: str, preexec_fn=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-u", CHILD, str(directory), *args], env=ENV, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=preexec_fn,
    )


def read_until(child: subprocess.Popen, pattern: str, lines: list[str]) -> re.Match:
    for line in child.stdout:
        lines.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"child ended before {pattern!r}:\n{''.join(lines[-30:])}")


def resume(directory, caplog=None, **options):
    """A fresh model after the callback's train-begin restore from `directory`."""
    model = mlp()
    callback = CheckpointCallback(directory=str(directory), every_n_steps=4, **options)
    callback.set_model(model)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer") if caplog else contextlib.nullcontext():
        callback.on_train_begin()
    callback.manager.close()
    return model


# --- Atomic publish and leftovers ---------------------------------------------------


def test_a_save_leaves_no_temporary_files(tmp_path):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=4))
    assert sorted(os.listdir(tmp_path)) == [
        ".tfcheckpointer.lock", "checkpoint", "graph.pbtxt",
        "model.ckpt-4.data-00000-of-00001", "model.ckpt-4.index", "model.ckpt-4.meta",
        "model.ckpt-8.data-00000-of-00001", "model.ckpt-8.index", "model.ckpt-8.meta",
    ]


def test_leftovers_of_a_crashed_save_are_removed_at_start_but_checkpoints_kept(tmp_path, caplog):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=8))
    leftovers = [
        "model.ckpt-12.tfcheckpointer-tmp.index",
        "model.ckpt-12.tfcheckpointer-tmp.data-00000-of-00001.tempstate123456",
        "checkpoint.tfcheckpointer-tmp",
    ]
    for name in leftovers:
        (tmp_path / name).write_bytes(b"half written")
    model = mlp()
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=8)
    callback.set_model(model)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        callback.on_train_begin()
    callback.manager.close()
    assert not [n for n in os.listdir(tmp_path) if "tmp" in n]
    assert steps_on_disk(tmp_path) == [8]
    assert int(model.optimizer.iterations.numpy()) == 8
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Removed ")]
    assert len(removed) == 3 and "left by an interrupted save" in removed[0]


def test_files_are_byte_identical_to_a_saver_save(tmp_path):
    model = mlp()
    fit(model, CheckpointCallback(directory=str(tmp_path / "ours"), every_n_steps=8, async_save=True))
    variables = checkpoint_variables(model, include_optimizer=True)
    os.makedirs(tmp_path / "saver")
    make_saver(variables).save(None, str(tmp_path / "saver" / "model.ckpt-8"), write_meta_graph=False, write_state=False)
    for suffix in (".index", ".data-00000-of-00001"):
        ours = (tmp_path / "ours" / f"model.ckpt-8{suffix}").read_bytes()
        assert ours == (tmp_path / "saver" / f"model.ckpt-8{suffix}").read_bytes(), suffix


# --- Resume falls back past unreadable checkpoints --------------------------------


def corrupt_newest(directory, how: str) -> None:
    data = Path(directory) / "model.ckpt-8.data-00000-of-00001"
    if how == "truncated data":
        data.write_bytes(data.read_bytes()[:100])
    elif how == "missing shard":
        data.unlink()
    else:
        (Path(directory) / "model.ckpt-8.index").write_bytes(b"\0" * 10)


@pytest.mark.parametrize("how", ["truncated data", "missing shard", "garbage index"])
def test_resume_skips_an_unreadable_newest_checkpoint(tmp_path, how, caplog):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=4))
    corrupt_newest(tmp_path, how)
    model = resume(tmp_path, caplog)
    assert int(model.optimizer.iterations.numpy()) == 4
    warning = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Skipped")][0]
    assert f"Skipped unreadable checkpoint(s): {tmp_path}/model.ckpt-8 (" in warning
    assert warning.endswith(f"resumed from {tmp_path}/model.ckpt-4.")
    # Set aside, so that it is neither resumed from nor counted by retention.
    assert steps_on_disk(tmp_path) == [4]
    assert (tmp_path / "model.ckpt-8.corrupt.index").exists()


def test_no_readable_checkpoint_starts_fresh_with_latest_and_fails_when_required(tmp_path, caplog):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path / "run"), every_n_steps=8))
    corrupt_newest(tmp_path / "run", "truncated data")
    required = CheckpointCallback(
        directory=str(tmp_path / "other"), every_n_steps=8, restore=str(tmp_path / "run" / "model.ckpt-8")
    )
    required.set_model(mlp())
    with pytest.raises(CheckpointError, match=r"No readable checkpoint; skipped: .*model\.ckpt-8 \(Cannot read global_step .*: Read less bytes than requested\)"):
        required.on_train_begin()
    required.manager.close()
    model = mlp()
    latest = CheckpointCallback(directory=str(tmp_path / "run"), every_n_steps=8)
    latest.set_model(model)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        latest.on_train_begin()
    latest.manager.close()
    assert int(model.optimizer.iterations.numpy()) == 0
    assert any("No readable checkpoint" in r.getMessage() and "Starting from step 0" in r.getMessage() for r in caplog.records)


# --- Async ------------------------------------------------------------------------------


def test_async_output_restores_with_a_saver(tmp_path):
    model = mlp()
    fit(model, CheckpointCallback(directory=str(tmp_path), every_n_steps=3, async_save=True, max_to_keep=None))
    assert steps_on_disk(tmp_path) == [3, 6, 8]
    prefix = tf.train.latest_checkpoint(str(tmp_path))
    fresh = mlp(seed=9)
    fresh.optimizer.build(fresh.trainable_variables)
    variables = checkpoint_variables(fresh, include_optimizer=True)
    make_saver(variables).restore(None, prefix)
    for key, variable in checkpoint_variables(model, include_optimizer=True).items():
        np.testing.assert_array_equal(variables[key].numpy(), variable.numpy(), err_msg=key)


def test_async_snapshot_is_the_state_at_the_step_not_later(tmp_path):
    """The write runs while training goes on; the file still holds the values of its step."""
    model = mlp()
    model.optimizer.build(model.trainable_variables)
    variables = checkpoint_variables(model, include_optimizer=True)
    manager = CheckpointManager(CheckpointConfig(directory=str(tmp_path), every_n_steps=1, async_save=True))
    manager.start(variables, step=0)
    kernel = variables["dense/kernel"]
    expected = kernel.numpy().copy()
    manager.save(1)
    kernel.assign(kernel + 1.0)  # training moves on while the write may still run
    manager.close()
    stored = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-1")).get_tensor("dense/kernel")
    np.testing.assert_array_equal(stored, expected)


def test_async_keeps_at_most_one_write_in_flight(tmp_path):
    model = mlp()
    model.optimizer.build(model.trainable_variables)
    manager = CheckpointManager(
        CheckpointConfig(directory=str(tmp_path), every_n_steps=1, async_save=True, max_to_keep=None)
    )
    manager.start(checkpoint_variables(model, include_optimizer=True), step=0)
    for step in range(1, 6):
        manager.save(step)
        # Submitting step N waited for step N-1: it is published, and N is the only write in flight.
        assert steps_on_disk(tmp_path) in (list(range(1, step)), list(range(1, step + 1)))
        writers = [t for t in __import__("threading").enumerate() if t.name == "tfcheckpointer-writer"]
        assert len(writers) <= 1
    manager.close()
    assert steps_on_disk(tmp_path) == [1, 2, 3, 4, 5]


EXIT_WITH_A_WRITE_IN_FLIGHT = """
import sys
import numpy as np, tensorflow as tf
import tfcheckpointer
from tfcheckpointer.checkpoint.manager import CheckpointManager
from tfcheckpointer.config import CheckpointConfig
manager = CheckpointManager(CheckpointConfig(directory=sys.argv[1], async_save=True, every_n_steps=1, save_on_signals=()))
manager.start({"w": tf.Variable(np.arange(4096, dtype="float32")), "global_step": tf.Variable(1, tf.int64)}, step=1)
manager.restore()
manager.save(1)
# The main thread ends here, with the write in flight (fit raised in the next step, say).
"""


def test_an_async_write_in_flight_when_the_main_thread_ends_is_finished(tmp_path):
    """At interpreter exit no thread pool takes work: the write must finish all the same."""
    result = subprocess.run(
        [sys.executable, "-c", EXIT_WITH_A_WRITE_IN_FLIGHT, str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=ENV,
    )
    assert result.returncode == 0 and "write failed" not in result.stderr, result.stderr[-2000:]
    reader = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-1"))
    np.testing.assert_array_equal(reader.get_tensor("w"), np.arange(4096, dtype="float32"))


def test_async_background_error_is_raised_on_the_next_save(tmp_path):
    directory = tmp_path / "ckpt"
    model = mlp()
    model.optimizer.build(model.trainable_variables)
    manager = CheckpointManager(CheckpointConfig(directory=str(directory), every_n_steps=1, async_save=True, lock=False))
    manager.start(checkpoint_variables(model, include_optimizer=True), step=0)
    directory.write_text("a file where the directory should be")  # every write now fails
    manager.save(1)  # returns at once; the write fails in the background
    with pytest.raises(CheckpointError, match=r"Cannot write checkpoint .*ckpt/model\.ckpt-1"):
        manager.save(2)
    manager.save(3)
    with pytest.raises(CheckpointError, match=r"model\.ckpt-3"):
        manager.close()  # ... and a failure at the end too


def test_async_background_error_with_warn_lets_training_go_on(tmp_path, caplog):
    directory = tmp_path / "ckpt"
    callback = CheckpointCallback(directory=str(directory), every_n_steps=2, async_save=True, on_error="warn", lock=False)
    directory.write_text("a file where the directory should be")
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        fit(mlp(), callback)
    warnings = [r.getMessage() for r in caplog.records if "training goes on" in r.getMessage()]
    # Step 8 twice: a failed save does not count as saved, so train end tries it again.
    assert [w.split(":")[0] for w in warnings] == [f"Cannot write {directory}/graph.pbtxt"] + [
        f"Cannot write checkpoint {directory}/model.ckpt-{step}" for step in (2, 4, 6, 8, 8)
    ]


# --- Faults: full disk, no permission ------------------------------------------------------


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A real tmpfs of `size` mounted at `path` (needs root, as CI has)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")


def state_bytes(model) -> int:
    model.optimizer.build(model.trainable_variables)
    return sum(v.numpy().nbytes for v in checkpoint_variables(model, include_optimizer=True).values())


@needs_root
def test_a_disk_too_small_fails_before_writing(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(512)])  # ~400 KB with Adam
    model.compile("adam", "mse")
    with small_disk(tmp_path / "disk", "128k") as disk:
        callback = CheckpointCallback(directory=str(disk), every_n_steps=1)
        x = np.zeros((4, 64), "float32")
        with pytest.raises(CheckpointError, match=rf"Cannot write a checkpoint to {disk}: it needs ([\d,]+) bytes and the disk has [\d,]+ free") as raised:
            model.fit(x, np.zeros((4, 512), "float32"), callbacks=[callback], verbose=0)
        needed = int(re.search(r"needs ([\d,]+) bytes", str(raised.value)).group(1).replace(",", ""))
        meta = len(callback.manager.saver.extra_files[".meta"])
        assert needed == state_bytes(model) + meta
        assert sorted(os.listdir(disk)) == [".tfcheckpointer.lock", "graph.pbtxt"]


@needs_root
@pytest.mark.parametrize("on_error", ["raise", "warn"])
def test_a_disk_that_fills_up_mid_write_keeps_the_previous_checkpoint(tmp_path, on_error, caplog):
    model = mlp()
    with small_disk(tmp_path / "disk", "1m") as disk:
        fit(model, CheckpointCallback(directory=str(disk), every_n_steps=8))
        good = {p.name: p.read_bytes() for p in disk.iterdir() if p.name.startswith("model.ckpt-8")}
        # Leave a page for the lock file and the bytes of tensors + .meta rounded up to pages,
        # so the early check passes, but not the pages the files take (tmpfs allocates whole
        # pages per file, and the index needs one more).
        page = os.statvfs(disk).f_frsize
        free = os.statvfs(disk).f_bavail * page
        needed = state_bytes(model) + (disk / "model.ckpt-8.meta").stat().st_size
        (disk / "filler").write_bytes(b"\0" * (free - page - -(-needed // page) * page))
        callback = CheckpointCallback(directory=str(disk), every_n_steps=4, on_error=on_error)
        with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
            if on_error == "raise":
                with pytest.raises(CheckpointError, match=rf"Cannot write checkpoint {disk}/model.ckpt-12: .*(space|Space)"):
                    fit(model, callback)
                callback.manager.close()
            else:
                fit(model, callback)
                failures = [r.getMessage() for r in caplog.records if "training goes on" in r.getMessage()]
                # Steps 12 and 16, then 16 again at train end: a failed save is not a saved step.
                assert len(failures) == 3 and "model.ckpt-12" in failures[0]
        assert steps_on_disk(disk) == [8]
        assert {p.name: p.read_bytes() for p in disk.iterdir() if p.name.startswith("model.ckpt-8")} == good
        assert not [p.name for p in disk.iterdir() if "tmp" in p.name]
        assert tf.train.latest_checkpoint(str(disk)) == f"{disk}/model.ckpt-8"


def drop_root_powers():
    """Run the child as root without the capability to ignore file permissions."""
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("on_error", ["raise", "warn"])
def test_permission_denied_keeps_the_previous_checkpoint(tmp_path, on_error):
    directory = tmp_path / "ckpt"
    first = subprocess.run([sys.executable, CHILD, str(directory), "--epochs", "2", "--every", "2"], env=ENV, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    before = {p.name: p.read_bytes() for p in directory.iterdir() if p.name.startswith("model.ckpt")}
    directory.chmod(0o555)
    try:
        second = subprocess.run(
            [*drop_root_powers(), sys.executable, CHILD, str(directory), "--epochs", "2", "--every", "1", "--on-error", on_error],
            env=ENV, capture_output=True, text=True,
        )
    finally:
        directory.chmod(0o755)
    output = second.stdout + second.stderr
    assert "INFO Restored checkpoint step=2" in output
    assert re.search(rf"Cannot write checkpoint {directory}/model.ckpt-3: .*Permission denied", output), output
    if on_error == "raise":
        assert second.returncode == 1
        assert "tfcheckpointer.errors.CheckpointError" in output
    else:
        assert second.returncode == 0 and "done" in output
        assert output.count("training goes on") == 3  # steps 3 and 4, and 4 again at train end
    assert {p.name: p.read_bytes() for p in directory.iterdir() if p.name.startswith("model.ckpt")} == before


# --- One writer per directory ------------------------------------------------------------


def test_a_second_process_fails_fast_naming_the_holder(tmp_path, caplog):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom tfcheckpointer.checkpoint.lock import DirectoryLock\n"
         f"DirectoryLock({str(tmp_path)!r}).acquire()\nprint('locked', flush=True)\ntime.sleep(60)\n"],
        env=ENV, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=1)
        started = time.monotonic()
        with pytest.raises(DirectoryLockedError, match=rf"is in use by pid {holder.pid} on host {os.uname().nodename} \(holding it since 20\d\d-"):
            fit(mlp(), callback)
        assert time.monotonic() - started < 30
        assert steps_on_disk(tmp_path) == []
    finally:
        holder.kill()
        holder.wait()
    # The holder died without letting go: the lock is taken over, with a warning.
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=8))
    assert steps_on_disk(tmp_path) == [8]
    assert any(f"left by pid {holder.pid}" in r.getMessage() and "no longer running" in r.getMessage() for r in caplog.records)


def test_a_run_that_died_in_this_process_does_not_lock_out_the_next(tmp_path):
    first = CheckpointCallback(directory=str(tmp_path), every_n_steps=8)
    first.set_model(mlp())
    first.on_train_begin()  # then fit() "dies": on_train_end never comes
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=8))
    assert steps_on_disk(tmp_path) == [8]


def test_lock_file_creation_failure_is_a_checkpoint_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="Cannot lock checkpoint directory"):
        DirectoryLock(str(tmp_path / "file" / "ckpt")).acquire()


# --- Signals ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_mid_epoch_saves_the_current_step_then_stops(tmp_path, signum):
    # 500 steps in one epoch, slowed down so the signal lands mid-epoch; no save is due.
    child = start_child(tmp_path, "--rows", "4000", "--batch", "8", "--epochs", "1", "--every", "100000", "--sleep", "0.01")
    lines: list[str] = []
    read_until(child, r"^step 40$", lines)
    child.send_signal(signum)
    lines += child.stdout.readlines()
    child.wait(timeout=120)
    output = "".join(lines)
    last_step = max(int(m) for m in re.findall(r"^step (\d+)$", output, re.M))
    assert 40 <= last_step < 500
    assert f"Stopping at step {last_step} on {signum.name}" in output
    assert steps_on_disk(tmp_path) == [last_step]
    assert tf.train.load_checkpoint(str(tmp_path / f"model.ckpt-{last_step}")).get_tensor("global_step") == last_step
    assert "done" not in output
    if signum == signal.SIGTERM:
        assert child.returncode == -signal.SIGTERM  # killed by the signal, as it asked
    else:
        assert "KeyboardInterrupt" in output and child.returncode != 0


# --- kill -9 at random moments -----------------------------------------------------------


@pytest.mark.slow
def test_kill_9_at_random_moments_always_resumes_from_a_complete_checkpoint(tmp_path):
    from tests.helpers.train_child import build_model, dataset

    rng = random.Random(1234)
    newest = 0
    for attempt in range(6):
        child = start_child(tmp_path, "--every", "1", "--epochs", "100000")
        lines: list[str] = []
        first = read_until(child, r"^(?:INFO Restored checkpoint step=(\d+) |step \d+$)", lines)
        restored = int(first.group(1)) if first.group(1) else 0
        assert restored == newest, "".join(lines)  # resumed from the newest complete checkpoint
        if attempt:
            read_until(child, rf"^step {newest + 1}$", lines)  # the count continues
        time.sleep(rng.uniform(0.05, 1.5))  # most of each step is spent saving
        child.kill()
        child.wait()
        prefix = tf.train.latest_checkpoint(str(tmp_path))
        newest = int(prefix.rsplit("-", 1)[1])
        assert newest > 0 and tf.train.load_checkpoint(prefix).get_tensor("global_step") == newest
        assert newest in steps_on_disk(tmp_path)
    # The weights saved at that step are exactly those of an uninterrupted run at that step.
    from tensorflow.python.framework import config as tf_config

    tf.config.experimental.enable_op_determinism()
    try:
        model = build_model()
        x, y = dataset(32)
        for _ in range(newest):
            model.train_on_batch(x, y)
    finally:
        tf_config.disable_op_determinism()  # other tests use unseeded random ops
    reader = tf.train.load_checkpoint(prefix)
    for key, variable in checkpoint_variables(model, include_optimizer=True).items():
        np.testing.assert_allclose(reader.get_tensor(key), variable.numpy(), rtol=0, atol=1e-6, err_msg=key)


# --- Resume edge cases ---------------------------------------------------------------------


def test_a_signal_left_from_a_failed_fit_does_not_stop_the_next(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    model = mlp()
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=8)
    callback.set_model(model)
    callback.on_train_begin()  # then fit() "dies": on_train_end never comes ...
    os.kill(os.getpid(), signal.SIGINT)  # ... and Ctrl-C is pressed outside training
    fit(model, callback)  # the same callback trains again, to the end
    assert steps_on_disk(tmp_path) == [8]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_failed_restore_is_tried_again_on_the_next_fit(tmp_path):
    import keras

    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=8))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    other.compile("adam", "mse")
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=8)
    for _ in range(2):  # never "succeeds silently" into a fresh run over the old checkpoints
        with pytest.raises(RestoreMismatchError):
            fit(other, callback)
        callback.manager.close()
    assert steps_on_disk(tmp_path) == [8]


def test_another_savers_entry_in_the_state_file_is_not_resumed_from(tmp_path):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=8))
    # The user's own Saver writes `best-99` into the same directory and state file.
    with tf.Graph().as_default():
        v = tf.compat.v1.get_variable("v", [1])
        saver = tf.compat.v1.train.Saver([v])
        with tf.compat.v1.Session() as session:
            session.run(v.initializer)
            saver.save(session, str(tmp_path / "best"), global_step=99)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("best-99")
    assert int(resume(tmp_path).optimizer.iterations.numpy()) == 8


def test_a_damaged_state_file_falls_back_to_the_files(tmp_path, caplog):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=4))
    (tmp_path / "checkpoint").write_text("")  # e.g. a power cut before the data reached the disk
    model = resume(tmp_path, caplog)
    assert int(model.optimizer.iterations.numpy()) == 8
    assert any("Ignoring" in r.getMessage() for r in caplog.records)


def test_rewriting_an_existing_step_first_points_the_state_file_away(tmp_path):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path), every_n_steps=4, max_to_keep=None))
    old = (tmp_path / "model.ckpt-4.data-00000-of-00001").read_bytes()
    model = mlp(seed=5)
    fit(model, CheckpointCallback(directory=str(tmp_path), every_n_steps=4, restore="none", on_existing="keep", max_to_keep=None), rows(32))
    assert steps_on_disk(tmp_path) == [4, 8]
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-4")
    assert (tmp_path / "model.ckpt-4.data-00000-of-00001").read_bytes() != old
    np.testing.assert_array_equal(
        tf.train.load_checkpoint(str(tmp_path / "model.ckpt-4")).get_tensor("dense/kernel"),
        model.layers[0].kernel.numpy(),
    )


def test_a_warm_start_is_not_repeated_once_the_run_has_checkpoints(tmp_path):
    fit(mlp(), CheckpointCallback(directory=str(tmp_path / "pretrained"), every_n_steps=8))
    config = dict(directory=str(tmp_path / "finetune"), every_n_steps=4, restore=str(tmp_path / "pretrained" / "model.ckpt-8"), restore_optimizer=True)
    first = mlp()
    fit(first, CheckpointCallback(**config))
    assert int(first.optimizer.iterations.numpy()) == 16  # 8 restored + 8 trained
    second = mlp()
    fit(second, CheckpointCallback(**config))  # a restart of the same job
    assert int(second.optimizer.iterations.numpy()) == 24  # resumed from its own step 16
    assert steps_on_disk(tmp_path / "finetune") == [12, 16, 20, 24]
