"""One writer per checkpoint directory.

The lock is an `fcntl.flock` on `<directory>/.tfcheckpointer.lock`, which the
kernel releases when the holder dies however it dies, so a lock left by a
dead process is simply free. The file records the holder (host, pid, start
time) so that a refused process can say who is in the way, and so that a
takeover of a dead holder's lock can be reported.

Only local directories are locked: object stores (`gs://`, ...) have no
such primitive.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import socket
import time

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.errors import CheckpointError

logger = logging.getLogger("tfcheckpointer")


class DirectoryLockedError(CheckpointError):
    """Another live process writes checkpoints to the same directory."""

    def __init__(self, path: str, holder: dict):
        self.path = path
        self.holder = holder
        super().__init__(
            f"Checkpoint directory {os.path.dirname(path)} is in use by "
            f"{_describe(holder)} (lock file {path}). HINT: wait for that run to end, stop it, "
            "or give this run another checkpoint.directory."
        )


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    started = datetime.datetime.fromtimestamp(holder.get("started", 0)).isoformat(timespec="seconds")
    return f"pid {holder.get('pid')} on host {holder.get('host')} (holding it since {started})"


def _read_holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}


def _missing_directories(directory: str) -> list[str]:
    """`directory` and its ancestors that do not exist yet, deepest first."""
    missing = []
    directory = os.path.abspath(directory)
    while not os.path.exists(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    return missing


# Locks this process holds, by real path: a callback whose `fit()` died with an
# exception never reaches on_train_end, and the next one in the same process
# (a notebook re-run) must not be locked out by it.
_HELD: dict[str, DirectoryLock] = {}


class DirectoryLock:
    """An exclusive, non-blocking lock on a checkpoint directory."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, naming.LOCK_FILENAME)
        self._fd: int | None = None
        # What `acquire` brought into being, for `release(undo=True)` to take away.
        self._created: list[str] = []

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise `DirectoryLockedError` naming the holder."""
        if self.held:
            return
        try:
            self._acquire()
        except OSError as error:
            raise CheckpointError(
                f"Cannot lock checkpoint directory {os.path.dirname(self.path)}: {error}"
            ) from None

    def _acquire(self) -> None:
        created = _missing_directories(os.path.dirname(self.path))
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        if not os.path.exists(self.path):
            created.insert(0, self.path)
        key = os.path.realpath(self.path)
        earlier = _HELD.get(key)
        if earlier is not None:
            logger.warning(
                "Taking over the checkpoint lock %s from an earlier run in this process "
                "that did not finish.", self.path,
            )
            earlier.release()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise DirectoryLockedError(self.path, holder) from None
            # The holder may have removed the file between our open and flock.
            try:
                same_file = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(fd)
        previous = _read_holder(fd)
        if previous:
            logger.warning(
                "Taking over the checkpoint lock %s left by %s, which is no longer running.",
                self.path, _describe(previous),
            )
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self._fd = fd
        self._created = created
        _HELD[key] = self

    def release(self, *, undo: bool = False) -> None:
        """Let go of the lock, leaving an empty lock file for the next holder.

        With `undo` (a run refused before it wrote anything), the lock file
        and the directories that `acquire` created are removed instead, so
        the run leaves no trace.
        """
        if self._fd is None:
            return
        if undo and self.path in self._created:
            # Removed while still locked: a process waiting on this file sees it gone and
            # opens a new one (see `_acquire`).
            os.unlink(self.path)
        # Empty the file first, so the next holder sees a clean release, not a dead holder.
        os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None
        _HELD.pop(os.path.realpath(self.path), None)
        if undo:
            for directory in [p for p in self._created if p != self.path]:
                try:
                    os.rmdir(directory)
                except OSError:  # no longer empty: something else wrote there
                    break
        self._created = []
