"""`DirectoryLock`: one writer per checkpoint directory, with the holder named in the lock file.

Real `flock`s on real files; the "other live process" is a real child
Python process that takes the lock and sleeps.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfcheckpointer.checkpoint.lock import DirectoryLock, DirectoryLockedError
from tfcheckpointer.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
LOCK_FILE = ".tfcheckpointer.lock"


@pytest.fixture
def locks():
    """Build locks and release every one afterwards."""
    made: list[DirectoryLock] = []

    def make(directory) -> DirectoryLock:
        lock = DirectoryLock(str(directory))
        made.append(lock)
        return lock

    yield make
    for lock in made:
        lock.release()


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tfcheckpointer" and r.levelno == logging.WARNING]


def test_acquire_writes_host_pid_and_start_time_into_the_lock_file(tmp_path, locks):
    lock = locks(tmp_path)
    before = time.time()
    lock.acquire()
    assert lock.held
    assert lock.path == str(tmp_path / LOCK_FILE)
    holder = json.loads((tmp_path / LOCK_FILE).read_text())
    assert set(holder) == {"host", "pid", "started"}
    assert holder["host"] == socket.gethostname()
    assert holder["pid"] == os.getpid()
    assert before <= holder["started"] <= time.time()


def test_acquire_creates_the_directory(tmp_path, locks):
    locks(tmp_path / "a" / "b").acquire()
    assert (tmp_path / "a" / "b" / LOCK_FILE).is_file()


def test_release_empties_the_lock_file(tmp_path, locks):
    lock = locks(tmp_path)
    lock.acquire()
    lock.release()
    assert not lock.held
    assert (tmp_path / LOCK_FILE).read_bytes() == b""


def test_release_with_undo_removes_the_lock_file_and_the_directories_acquire_made(tmp_path, locks):
    (tmp_path / "a").mkdir()
    lock = locks(tmp_path / "a" / "b" / "c")
    lock.acquire()
    lock.release(undo=True)
    assert not lock.held
    assert os.listdir(tmp_path) == ["a"] and os.listdir(tmp_path / "a") == []


def test_release_with_undo_keeps_a_lock_file_that_was_there(tmp_path, locks):
    (tmp_path / LOCK_FILE).write_bytes(b"")
    lock = locks(tmp_path)
    lock.acquire()
    lock.release(undo=True)
    assert (tmp_path / LOCK_FILE).read_bytes() == b""


def test_acquire_and_release_twice_are_harmless(tmp_path, locks, caplog):
    lock = locks(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        lock.acquire()
        lock.acquire()
        lock.release()
        lock.release()
    assert not lock.held
    assert warnings_of(caplog) == []


def test_a_cleanly_released_lock_is_taken_without_a_warning(tmp_path, locks, caplog):
    first = locks(tmp_path)
    first.acquire()
    first.release()
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        locks(tmp_path).acquire()
    assert warnings_of(caplog) == []


def test_a_lock_left_by_a_dead_holder_is_taken_over_with_a_warning(tmp_path, locks, caplog):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": "gone-host", "pid": 4194303, "started": 0}))
    lock = locks(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        lock.acquire()
    assert lock.held
    [warning] = warnings_of(caplog)
    assert re.fullmatch(
        rf"Taking over the checkpoint lock {re.escape(lock.path)} left by pid 4194303 on host gone-host "
        r"\(holding it since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\), which is no longer running\.",
        warning,
    ), warning
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_lock_file_with_garbage_is_taken_over_silently(tmp_path, locks, caplog):
    (tmp_path / LOCK_FILE).write_bytes(b"\xff not json")
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        locks(tmp_path).acquire()
    assert warnings_of(caplog) == []
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_second_lock_in_this_process_takes_over_from_an_unfinished_first(tmp_path, locks, caplog):
    first, second = locks(tmp_path), locks(tmp_path)
    first.acquire()
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        second.acquire()
    assert warnings_of(caplog) == [
        f"Taking over the checkpoint lock {second.path} from an earlier run in this process "
        "that did not finish."
    ]
    assert second.held and not first.held
    first.release()  # the one taken over letting go does not free the new holder's lock
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_takeover_in_this_process_follows_the_real_path(tmp_path, locks, caplog):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    first, second = locks(tmp_path / "real"), locks(tmp_path / "link")
    first.acquire()
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        second.acquire()
    assert second.held and not first.held
    assert len(warnings_of(caplog)) == 1


@pytest.fixture
def holder_process(tmp_path):
    """A live child process that holds the lock on `tmp_path` until killed."""
    child = subprocess.Popen(
        [
            sys.executable, "-c",
            "import time\nfrom tfcheckpointer.checkpoint.lock import DirectoryLock\n"
            f"DirectoryLock({str(tmp_path)!r}).acquire()\nprint('locked', flush=True)\ntime.sleep(60)\n",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline() == "locked\n"
        yield child
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_a_lock_held_by_another_live_process_is_refused_naming_it(tmp_path, locks, holder_process):
    lock = locks(tmp_path)
    with pytest.raises(
        DirectoryLockedError,
        match=rf"^Checkpoint directory {re.escape(str(tmp_path))} is in use by pid {holder_process.pid} "
        rf"on host {re.escape(socket.gethostname())} \(holding it since \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\) "
        rf"\(lock file {re.escape(lock.path)}\)\. HINT: wait for that run to end, stop it, or give this "
        r"run another checkpoint\.directory\.$",
    ) as raised:
        lock.acquire()
    assert raised.value.holder["pid"] == holder_process.pid
    assert raised.value.path == lock.path
    assert isinstance(raised.value, CheckpointError)
    assert not lock.held


def test_the_lock_of_a_killed_process_is_taken_over_naming_it(tmp_path, locks, holder_process, caplog):
    holder_process.kill()
    holder_process.wait()
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        locks(tmp_path).acquire()
    [warning] = warnings_of(caplog)
    assert f"left by pid {holder_process.pid} on host" in warning
    assert warning.endswith("which is no longer running.")


def test_a_lock_that_cannot_be_created_is_a_checkpoint_error(tmp_path, locks):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match=rf"^Cannot lock checkpoint directory {re.escape(str(tmp_path))}/file/ckpt: "):
        locks(tmp_path / "file" / "ckpt").acquire()
