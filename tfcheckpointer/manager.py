"""The checkpoint manager: owns the step, the policies and the writer.

Adapters (the Keras callback, a TF1 session hook) turn their hooks into
calls on this object: `start`, `restore`, `on_step`, `on_end`. It asks the
save policy, takes a snapshot, writes it (in the background with
`async`), publishes it atomically, then applies retention to every
checkpoint in the directory, including those left by earlier runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from tfcheckpointer import naming
from tfcheckpointer.access import EagerVariables, SessionVariables
from tfcheckpointer.background import BackgroundWriter
from tfcheckpointer.config import CheckpointConfig
from tfcheckpointer.errors import CheckpointError, RestoreMismatchError
from tfcheckpointer.files import atomic_write
from tfcheckpointer.lock import DirectoryLock
from tfcheckpointer.policy import LastSave, RetentionPolicy, save_policy
from tfcheckpointer.preemption import SignalCatcher
from tfcheckpointer.writer import (
    CheckpointWriter,
    SavedCheckpoint,
    Snapshot,
    check_compatible,
    checkpoint_shapes,
    is_local,
)

logger = logging.getLogger("tfcheckpointer")

RESTORE_LATEST = "latest"
RESTORE_NONE = "none"


class CheckpointManager:
    """Saves variables on the configured cadence and restores them on resume.

    Args:
        config: The `checkpoint:` section.
        clock: Seconds since the epoch; injectable for tests of time triggers.
        announce: Called with a one-line message for each save and restore
            (the callback passes Keras's printer when `verbose` is on).
    """

    def __init__(
        self,
        config: CheckpointConfig,
        *,
        clock: Callable[[], float] = time.time,
        announce: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.writer = CheckpointWriter(config.directory, config.basename)
        self.save_policy = save_policy(
            every_n_steps=config.every_n_steps, every_n_seconds=config.every_n_seconds
        )
        self.retention = RetentionPolicy(
            config.max_to_keep, config.keep_checkpoint_every_n_hours, config.max_total_bytes
        )
        self._clock = clock
        self._announce = announce
        self._variables: Any = None
        self._extra_files: Mapping[str, bytes] = {}
        self._background = BackgroundWriter() if config.async_save else None
        self._lock = DirectoryLock(config.directory) if config.lock and is_local(config.directory) else None
        self._signals = SignalCatcher(config.save_on_signals)
        self.last_save = LastSave(step=0, time=clock())
        self.last_checkpoint: str | None = None

    # --- Lifecycle ------------------------------------------------------------

    def start(
        self,
        variables: Mapping[str, Any] | EagerVariables | SessionVariables,
        *,
        step: int,
        extra_files: Mapping[str, bytes] | None = None,
    ) -> None:
        """Lock the directory, clear a crashed run's leftovers and bind the variables.

        `variables` maps checkpoint keys to Keras / TF2 variables, or is an
        adapter from `access`; `step` is the global step they are at now;
        `extra_files` maps suffixes (`.meta`) to bytes written beside every
        checkpoint.
        """
        if isinstance(variables, Mapping):
            variables = EagerVariables(variables)
        # An earlier run of this manager may have died (no on_end) with a write in
        # flight: its temp files are not leftovers, and its error was logged already.
        if self._background is not None:
            earlier = self._background.wait()
            if earlier is not None:
                logger.warning("A background write of an earlier run failed: %s", earlier)
        if self._lock is not None:
            self._lock.acquire()
        for name in self.writer.remove_stale_temp_files():
            logger.warning("Removed %s/%s, left by an interrupted save.", self.writer.directory, name)
        self._variables = variables
        self._extra_files = dict(extra_files or {})
        self.last_save = LastSave(step=step, time=self._clock())
        self.last_published_step = step
        self._signals.received = None
        self._signals.install()

    def on_step(self, step: int) -> SavedCheckpoint | None:
        """Save if a checkpoint is due at `step`, or if a stop signal came."""
        if self._signals.received is not None:
            self._stop_for_signal(step)
        if self.save_policy.should_save(step, self._clock(), self.last_save):
            return self.save(step)
        return None

    def on_end(self, step: int) -> SavedCheckpoint | None:
        """Save the final step unless it is on disk already, and wait for every write.

        A save that failed earlier (under `on_error: warn`, or in the
        background) does not count: the final step is tried again.
        """
        if self._signals.received is not None:
            self._stop_for_signal(step)
        saved = None
        try:
            self.wait()
            if self.config.save_at_train_end and step > self.last_published_step:
                saved = self.save(step)
        finally:
            self.close()
        # A signal that came during the final save is honoured now that it is written.
        if self._signals.received is not None:
            self._signals.resume_signal()
        return saved

    def close(self) -> None:
        """Wait for the write in flight, then let go of the directory and the signals."""
        try:
            self.wait()
        finally:
            self._signals.uninstall()
            if self._lock is not None:
                self._lock.release()

    def _stop_for_signal(self, step: int) -> None:
        logger.warning("Stopping at step %d on %s.", step, self._signals.received.name)
        if step > self.last_save.step:
            self.save(step)
        self.close()
        self._signals.resume_signal()

    # --- Saving -----------------------------------------------------------------

    def save(self, step: int) -> SavedCheckpoint | None:
        """Checkpoint the variables as they are now.

        Synchronously, return what was written. With `async`, wait for the
        previous write, take the snapshot here and write it in the background
        (returning None); a background failure surfaces on the next save or
        at the end, under `on_error`.
        """
        snapshot = self._variables.snapshot()
        self.last_save = LastSave(step=step, time=self._clock())
        if self._background is None:
            try:
                return self._publish(step, snapshot)
            except CheckpointError as error:
                self._failed(error)
                return None
        self.wait()
        self._background.submit(lambda: self._publish(step, snapshot))
        return None

    def write_file(self, name: str, data: bytes) -> None:
        """Atomically write `name` into the checkpoint directory (failures follow `on_error`).

        A file already holding `data` (a resumed run's graph) is left alone.
        """
        path = f"{self.writer.directory}/{name}"
        try:
            if tf.io.gfile.exists(path):
                with tf.io.gfile.GFile(path, "rb") as f:
                    if f.read() == data:
                        return
            tf.io.gfile.makedirs(self.writer.directory)
            atomic_write(path, data)
        except (tf.errors.OpError, OSError) as error:
            cause = getattr(error, "message", None) or str(error)
            self._failed(CheckpointError(f"Cannot write {path}: {cause}"))

    def wait(self) -> None:
        """Block until a background write ends; apply `on_error` to its failure."""
        if self._background is not None:
            error = self._background.wait()
            if error is not None:
                self._failed(error)

    def _failed(self, error: BaseException) -> None:
        if self.config.on_error == "warn" and isinstance(error, CheckpointError):
            logger.warning("%s -- training goes on (checkpoint.on_error: warn).", error)
            return
        raise error

    def _publish(self, step: int, snapshot: Snapshot) -> SavedCheckpoint:
        """Write, publish, point the state file at it, then prune."""
        extra_bytes = sum(len(data) for data in self._extra_files.values())
        try:
            self.writer.check_free_space(snapshot.nbytes + extra_bytes)
        except (tf.errors.OpError, OSError) as error:
            cause = getattr(error, "message", None) or str(error)
            raise CheckpointError(f"Cannot write checkpoint {self.writer.prefix(step)}: {cause}") from error
        self._unpublish(step)
        saved = self.writer.write(step, snapshot, extra_files=self._extra_files)
        try:
            on_disk = self.writer.list_checkpoints()
            # The checkpoint just written stays, even beside higher steps of an earlier run.
            doomed = [c for c in self.retention.to_delete(on_disk) if c.step != step]
            doomed_steps = {c.step for c in doomed}
            self.writer.write_state([c for c in on_disk if c.step not in doomed_steps], latest=step)
            for checkpoint in doomed:
                self.writer.delete(checkpoint.step)
        except (tf.errors.OpError, OSError) as error:
            raise CheckpointError(
                f"Wrote {saved.prefix} but could not update {self.writer.directory}: {error}"
            ) from error
        self.last_checkpoint = saved.prefix
        self.last_published_step = step
        logger.info(
            "Saved checkpoint step=%d path=%s bytes=%d seconds=%.3f",
            saved.step, saved.prefix, saved.bytes, saved.seconds,
        )
        self._say(
            f"Saved checkpoint {saved.prefix} (step {saved.step}, "
            f"{saved.bytes} bytes, {saved.seconds:.2f}s)."
        )
        return saved

    def _unpublish(self, step: int) -> None:
        """Before a step is written again (a restart that went back), point the
        state file away from its old files, so it never names a half-replaced one."""
        try:
            # The usual case, a new step, costs one existence check, not a listing.
            if not tf.io.gfile.exists(self.writer.prefix(step) + naming.INDEX_SUFFIX):
                return
            others = [c for c in self.writer.list_checkpoints() if c.step != step]
            self.writer.write_state(others, latest=others[-1].step if others else None)
            self.writer.delete(step)
        except (tf.errors.OpError, OSError) as error:
            raise CheckpointError(
                f"Cannot replace {self.writer.prefix(step)}: {error}"
            ) from error

    # --- Restoring ----------------------------------------------------------------

    def restore(self, *, current_step: int = 0) -> int | None:
        """Restore per `config.restore`; return the restored step, or None.

        Unreadable checkpoints (truncated, missing shard) are skipped with a
        warning, and the newest readable one is used; with `restore: latest`
        unreadable ones of this run's own directory are also set aside
        (`<prefix>.corrupt.*`). When resuming, a model already at or past the
        newest checkpoint's step (a second `fit()` in one process) keeps its
        state rather than going back.
        """
        mode = self.config.restore
        if mode == RESTORE_NONE:
            return None
        candidates, required = self._restore_candidates()
        skipped: list[str] = []
        for prefix in candidates:
            try:
                step = self._restore_one(prefix, current_step, resuming=not required)
            except RestoreMismatchError:
                raise
            except CheckpointError as error:
                skipped.append(f"{prefix} ({error})")
                if not required:  # our own directory
                    aside = self.writer.set_aside(prefix)
                    logger.warning("Set unreadable checkpoint %s aside as %s.", prefix, aside)
                continue
            if skipped:
                logger.warning(
                    "Skipped unreadable checkpoint(s): %s; resumed from %s.", "; ".join(skipped), prefix
                )
            return step
        if skipped:
            message = "No readable checkpoint; skipped: " + "; ".join(skipped)
            if required:
                raise CheckpointError(message)
            logger.warning("%s. Starting from step %d.", message, current_step)
        return None

    def _restore_candidates(self) -> tuple[list[str], bool]:
        """Checkpoints to try, best first, and whether one of them must be restored.

        A prefix or directory in another directory starts a new run from it (a
        warm start): once this run has checkpoints of its own, a restart resumes
        from those instead of going back to the starting point.
        """
        restore = self.config.restore
        own = self.writer.candidates()
        if restore == RESTORE_LATEST:
            return own, False
        source = restore if tf.io.gfile.isdir(restore) else os.path.dirname(restore)
        if own and not _same_directory(source, self.writer.directory):
            logger.info(
                "checkpoint.restore names %s, but %s holds this run's own checkpoints; "
                "resuming from those.", restore, self.writer.directory,
            )
            return own, False
        if tf.io.gfile.isdir(restore):
            found = CheckpointWriter(restore, self.config.basename).candidates()
            if not found:
                raise CheckpointError(
                    f"checkpoint.restore: no checkpoint named {self.config.basename}-<step> "
                    f"in directory {restore}."
                )
            return found, True
        if not tf.io.gfile.exists(restore + naming.INDEX_SUFFIX):
            raise CheckpointError(
                f"checkpoint.restore: no checkpoint at {restore} "
                f"({restore}{naming.INDEX_SUFFIX} does not exist). HINT: give a prefix such as "
                f"{self.writer.prefix(100)}, a directory, `latest` or `none`."
            )
        return [restore], True

    def _restore_one(self, prefix: str, current_step: int, *, resuming: bool) -> int | None:
        shapes = self._variables.shapes()
        optional = {k for k in shapes if k.startswith(naming.OPTIMIZER_SCOPE + "/")}
        check_compatible(prefix, shapes, optional=optional)
        try:
            step = int(tf.train.load_checkpoint(prefix).get_tensor(naming.GLOBAL_STEP_KEY))
        except Exception as error:  # the C++ reader maps file damage to many Python types
            raise CheckpointError(f"Cannot read {naming.GLOBAL_STEP_KEY} from {prefix}: {error}") from None
        if resuming and 0 < step <= current_step:
            logger.info("Model is at step %d, past %s; not restoring.", current_step, prefix)
            return None
        present = set(checkpoint_shapes(prefix))
        if optional and not optional & present:
            logger.warning(
                "Checkpoint %s has no optimizer state; the optimizer starts fresh.", prefix
            )
        self._variables.restore(prefix, [k for k in shapes if k in present])
        self.last_save = LastSave(step=step, time=self._clock())
        self.last_published_step = step
        self.last_checkpoint = prefix
        logger.info("Restored checkpoint step=%d path=%s", step, prefix)
        self._say(f"Restored {prefix} (step {step}).")
        return step

    def _say(self, message: str) -> None:
        if self._announce is not None:
            self._announce(message)


def _same_directory(a: str, b: str) -> bool:
    if is_local(a) and is_local(b):
        return os.path.realpath(a or ".") == os.path.realpath(b or ".")
    return a.rstrip("/") == b.rstrip("/")
