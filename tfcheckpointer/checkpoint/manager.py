"""The checkpoint manager: owns the step, the policies, the saver and the restorer.

Adapters (the Keras callback, a TF1 session hook) turn their hooks into
calls on this object: `start`, `restore`, `on_step`, `on_end` (and
`on_epoch_end`, whose metrics score checkpoints for `keep_best`). It asks
the save policy, takes a snapshot, writes it (in the background with
`async`), publishes it atomically, then applies retention to every
checkpoint in the directory, including those left by earlier runs.

Given a `Cluster` (a multi-worker strategy), every worker runs a manager and
calls it at the same steps; only the chief's manager writes files. The others take
part in the collectives (`cluster` module): each save's snapshot, the
agreement on whether to save (the chief's clock, any worker's signal) and
the broadcast of the chief's restored values.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import tensorflow as tf

from tfcheckpointer.checkpoint.background import BackgroundWriter
from tfcheckpointer.checkpoint.bundle import SavedCheckpoint, Snapshot, holds_values
from tfcheckpointer.checkpoint.cluster import Cluster, primary_copies
from tfcheckpointer.checkpoint.directory import CheckpointDirectory, directory_key, is_local
from tfcheckpointer.checkpoint.files import atomic_write
from tfcheckpointer.checkpoint.listeners import Listeners
from tfcheckpointer.checkpoint.lock import DirectoryLock
from tfcheckpointer.checkpoint.policy import BestK, LastSave, RetentionPolicy, save_policy
from tfcheckpointer.checkpoint.restore import Restored, Restorer, StartOver
from tfcheckpointer.checkpoint.saver import CheckpointSaver
from tfcheckpointer.checkpoint.scores import record_epoch
from tfcheckpointer.checkpoint.signals import SignalCatcher
from tfcheckpointer.checkpoint.staging import StagingBuffers
from tfcheckpointer.checkpoint.storage import local_only_note
from tfcheckpointer.checkpoint.tf_utils import op_error_text
from tfcheckpointer.checkpoint.variables import EagerVariables, SessionVariables
from tfcheckpointer.config.schema import CheckpointConfig
from tfcheckpointer.errors import CheckpointError

logger = logging.getLogger("tfcheckpointer")

# What the end of training saves (`_final_save`), as numbers the workers can agree on.
_NO_SAVE, _SAVE, _SAVE_IF_CHANGED = 0, 1, 2

# The manager that last started on each directory in this process. One that was
# started earlier and still steps is a second writer: they would write the same
# steps twice. (An earlier one that never steps again -- its fit() died -- is fine.)
_WRITERS: dict[str, CheckpointManager] = {}


class CheckpointManager:
    """Saves variables on the configured cadence and restores them on resume.

    Args:
        config: The `checkpoint:` section.
        clock: Seconds since the epoch; injectable for tests of time triggers.
        announce: Called with a one-line message for each save and restore
            (the callback passes Keras's printer when `verbose` is on).
        owner: Names the adapter in the error about two writers on one
            directory (e.g. "CheckpointCallback created at train.py:12").
        listeners: Told `after_save` once each checkpoint is published; with
            `async`, in the writer thread, and the next save waits for them.
    """

    def __init__(
        self,
        config: CheckpointConfig,
        *,
        clock: Callable[[], float] = time.time,
        announce: Callable[[str], None] | None = None,
        owner: str = "a CheckpointManager",
        listeners: Listeners | None = None,
    ):
        self.config = config
        self.cluster: Cluster | None = None
        """This worker's part in a multi-worker job, given to `start`; None for a single worker."""
        self.owner = owner
        self._superseded_by: str | None = None
        self.directory = CheckpointDirectory(config.directory, config.basename)
        keep_best = config.keep_best
        self.saver = CheckpointSaver(
            self.directory,
            RetentionPolicy(
                config.max_to_keep, config.keep_checkpoint_every_n_hours, config.max_total_bytes,
                BestK(keep_best.k, keep_best.mode) if keep_best else None,
            ),
            monitor=keep_best.monitor if keep_best else None,
            spare=config.spare_data_file,
        )
        self.restorer = Restorer(
            self.directory, config.restore,
            restore_optimizer=config.restore_optimizer, on_existing=config.on_existing,
        )
        self.save_policy = save_policy(
            every_n_steps=config.every_n_steps, every_n_seconds=config.every_n_seconds
        )
        self._clock = clock
        self._announce = announce
        self.listeners = Listeners() if listeners is None else listeners
        self._variables: Any = None
        self._background = BackgroundWriter() if config.async_save else None
        self._staging = StagingBuffers() if config.async_save else None
        self._lock = DirectoryLock(config.directory) if config.lock and is_local(config.directory) else None
        if not is_local(config.directory):
            logger.info(local_only_note(config.directory))
        self._signals = SignalCatcher(config.save_on_signals)
        self._held_signal: Any = None
        """In a cluster, a signal that came during the agreement: told to the others next time."""
        self.last_save = LastSave(step=0, time=clock())
        self.last_published_step = 0
        self.last_checkpoint: str | None = None
        self._unscored: list[int] = []
        """Steps saved since the last epoch end, which its metrics will score (`keep_best`)."""
        self._warned_no_monitor = False

    # --- Lifecycle ------------------------------------------------------------

    def start(
        self,
        variables: Mapping[str, Any] | EagerVariables | SessionVariables,
        *,
        step: int,
        extra_files: Mapping[str, bytes] | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        """Lock the directory and bind the variables; call `restore` next.

        `variables` maps checkpoint keys to Keras / TF2 variables, or is an
        adapter from `variables`; `step` is the global step they are at now;
        `extra_files` maps suffixes (`.meta`) to bytes written beside every
        checkpoint (`saver.extra_files`, which may also be set later);
        `cluster` is this worker's part in a multi-worker job (`cluster_of`
        the variables' strategy), None for a single worker. Nothing
        in the directory changes here: a crashed run's leftovers are cleared
        once `restore` has accepted the directory.
        """
        if isinstance(variables, Mapping):
            variables = EagerVariables(variables)
        # An earlier run of this manager may have died (no on_end) with a write in
        # flight: its temp files are not leftovers, and its error was logged already.
        if self._background is not None:
            earlier = self._background.wait()
            if earlier is not None:
                logger.warning("A background write of an earlier run failed: %s", earlier)
        self.cluster = cluster
        if self._lock is not None and self.writes:
            self._lock.acquire()
        key = directory_key(self.config.directory)
        earlier = _WRITERS.get(key)
        if earlier is not None and earlier is not self:
            earlier._superseded_by = self.owner
        _WRITERS[key] = self
        self._superseded_by = None
        self._variables = variables
        self.saver.extra_files = dict(extra_files or {})
        self.last_save = LastSave(step=step, time=self._clock())
        self.last_published_step = step
        self._unscored = []
        self._signals.received = self._held_signal = None
        self._signals.install()

    @property
    def writes(self) -> bool:
        """Whether this manager writes files: False on a worker that is not the chief."""
        return self.cluster is None or self.cluster.is_chief

    def may_save(self, step: int) -> bool:
        """Whether `on_step(step)` would save: a checkpoint is due, or a stop signal came."""
        return self._signals.received is not None or self.save_policy.should_save(
            step, self._clock(), self.last_save
        )

    def on_step(self, step: int) -> SavedCheckpoint | None:
        """Save if a checkpoint is due at `step`, or if a stop signal came."""
        self._check_sole_writer()
        due = self._signalled_or_due(step)
        if self._signals.received is not None:
            self._stop_for_signal(step)
        if due and step > self.last_save.step:
            return self.save(step)
        return None

    def _signalled_or_due(self, step: int) -> bool:
        """Whether a save is due at `step`; in a cluster, the chief's answer and any worker's signal.

        Every worker calls the collective at every step, so a time trigger that
        falls due on the chief's clock alone cannot make the workers part ways.
        """
        due = self.save_policy.should_save(step, self._clock(), self.last_save)
        signals = self._signals.signals
        if self.cluster is None or (not signals and self.config.every_n_seconds is None):
            return due  # steps alone: every worker computes the same answer
        # Read once: the handler may record a signal while the all-reduce runs, after this
        # worker's part was sent. Acting on it now would take this worker alone into a save
        # (a collective) the others never join, so it is held back and told at the next call.
        mine = self._signals.received or self._held_signal
        agreed = self.cluster.agree(
            [int(due and self.cluster.is_chief), *(int(mine == s) for s in signals)]
        )
        received = next((s for s, n in zip(signals, agreed[1:]) if n), None)
        if received is None:
            self._held_signal, self._signals.received = self._signals.received or mine, None
        elif self._signals.received is None:
            if mine is None:
                logger.warning("Another worker received %s: every worker saves and stops.", received.name)
            self._signals.uninstall()
            self._signals.received, self._held_signal = received, None
        return bool(agreed[0])

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Record `metrics` as the score of the checkpoints saved since the last epoch end.

        Only with `keep_best`. `epoch` counts from 1; `metrics` are the
        epoch's logs (`loss`, `val_loss`, ...). Without the monitored metric
        among them, the checkpoints get no score for it (retention keeps them
        by recency only), and the first time this is said in a warning.
        """
        keep_best = self.config.keep_best
        if keep_best is None or not self.writes:
            return
        if keep_best.monitor not in metrics and not self._warned_no_monitor:
            self._warned_no_monitor = True
            logger.warning(
                "checkpoint.keep_best.monitor %r is not among the metrics of epoch %d (%s), so "
                "its checkpoints have no score and are kept by recency only. HINT: val_ metrics "
                "need validation data (fit's validation_data or validation_split); or monitor "
                "one of the metrics above.",
                keep_best.monitor, epoch, ", ".join(map(str, metrics)) or "none",
            )
        steps, self._unscored = self._unscored, []
        if not steps:
            return
        self.wait()  # a background write must be on disk to be scored
        try:
            record_epoch(
                self.directory.directory, [self.directory.name(s) for s in steps],
                epoch=epoch, metrics=metrics, keep_best=keep_best,
            )
        except (tf.errors.OpError, OSError) as error:
            self._failed(CheckpointError(
                f"Cannot record the scores of epoch {epoch} in {self.directory.directory}: "
                f"{op_error_text(error)}"
            ))

    def on_end(
        self, step: int, *, must_hold: Collection[str] = ()
    ) -> SavedCheckpoint | None:
        """Save the final step unless it is on disk already, and wait for every write.

        A save that failed earlier (under `on_error: warn`, or in the
        background) does not count: the final step is tried again.

        `must_hold` names variables (the model's weights) that the final
        checkpoint must hold as they are now, although something may have
        changed them after the step was saved (EarlyStopping's
        `restore_best_weights`): then a kept checkpoint that holds them
        becomes `last_checkpoint`, or else the step is saved again.
        """
        self._check_sole_writer()
        if self.cluster is not None:
            self._signalled_or_due(step)
        if self._signals.received is not None:
            self._stop_for_signal(step)
        saved = None
        try:
            self.wait()
            final = self._final_save(step, bool(must_hold))
            if final == _SAVE:
                saved = self.save(step)
            elif final == _SAVE_IF_CHANGED:
                saved = self._save_if_changed(step, must_hold)
        finally:
            self.close()
        # A signal that came during the final save is honoured now that it is written.
        if self._signals.received is None:
            self._signals.received, self._held_signal = self._held_signal, None
        if self._signals.received is not None:
            self._signals.resume_signal()
        return saved

    def _final_save(self, step: int, must_hold: bool) -> int:
        """What the end of training saves: the chief's choice in a cluster (a failed save
        under `on_error: warn` leaves only the chief's `last_published_step` behind)."""
        if self.config.save_at_train_end and step > self.last_published_step:
            final = _SAVE
        elif must_hold and self.last_checkpoint is not None:
            final = _SAVE_IF_CHANGED
        else:
            final = _NO_SAVE
        return final if self.cluster is None else self.cluster.chief_decides(final)

    def _save_if_changed(self, step: int, keys: Collection[str]) -> SavedCheckpoint | None:
        snapshot = self._variables.snapshot()
        if not self.writes:
            return None
        now = {k: t for k, t in zip(snapshot.keys, snapshot.tensors) if k in keys}
        kept = [self.last_checkpoint, *self.directory.candidates()]
        for prefix in dict.fromkeys(kept):
            if prefix is not None and holds_values(prefix, now):
                if prefix != self.last_checkpoint:
                    logger.info("The model's weights at the end are those of %s.", prefix)
                    self.last_checkpoint = prefix
                return None
        if not self.config.save_at_train_end:
            logger.warning(
                "The model's weights changed after %s was saved, and no checkpoint holds them "
                "(checkpoint.save_at_train_end is false).", self.last_checkpoint,
            )
            self.last_checkpoint = None
            return None
        logger.warning(
            "The model's weights changed after %s was saved (by a callback such as "
            "EarlyStopping(restore_best_weights=True)); saving step %d again with the weights "
            "the model holds now.", self.last_checkpoint, step,
        )
        return self.save(step, snapshot)

    def close(self, *, undo: bool = False) -> None:
        """Wait for the write in flight, then let go of the directory and the signals.

        `undo` also removes a lock file (or directory) that taking the lock created.
        """
        try:
            self.wait()
        finally:
            self.saver.release_spare()
            if self._staging is not None:
                self._staging.clear()
            self._signals.uninstall()
            self.restorer.copies.clear()
            if self._lock is not None:
                self._lock.release(undo=undo)
            key = directory_key(self.config.directory)
            if _WRITERS.get(key) is self:
                del _WRITERS[key]

    def _check_sole_writer(self) -> None:
        if self._superseded_by is not None:
            raise CheckpointError(
                f"Two checkpoint writers on {self.config.directory} in one process: "
                f"{self.owner} and {self._superseded_by}; both would write the same steps. "
                "HINT: use one checkpoint callback per directory, or give each its own "
                "checkpoint.directory."
            )

    def _stop_for_signal(self, step: int) -> None:
        logger.warning("Stopping at step %d on %s.", step, self._signals.received.name)
        if step > self.last_save.step:
            self.save(step)
        self.close()
        self._signals.resume_signal()

    # --- Saving -----------------------------------------------------------------

    def save(self, step: int, snapshot: Snapshot | None = None) -> SavedCheckpoint | None:
        """Checkpoint the variables as they are now (or `snapshot`, taken earlier).

        Synchronously, return what was written. With `async`, wait for the
        previous write, take the snapshot here and write it in the background
        (returning None); a background failure surfaces on the next save or
        at the end, under `on_error`. In a cluster every worker calls it (the
        snapshot is a collective); a worker that is not the chief writes nothing.
        """
        if snapshot is None:
            snapshot = self._variables.snapshot()
        self.last_save = LastSave(step=step, time=self._clock())
        if not self.writes:
            self.last_published_step = step
            return None
        if self.config.keep_best is not None:
            self._unscored.append(step)
        if self._background is None:
            try:
                return self._publish(step, snapshot)
            except CheckpointError as error:
                self._failed(error)
                return None
        self.wait()
        staged = self._staging.stage(snapshot)
        del snapshot  # let go of the variables' buffers before training goes on
        self._background.submit(lambda: self._publish(step, staged))
        return None

    def write_file(self, name: str, data: bytes) -> None:
        """Atomically write `name` into the checkpoint directory (failures follow `on_error`).

        A file already holding `data` (a resumed run's graph) is left alone.
        A worker that is not the chief writes nothing.
        """
        if not self.writes:
            return
        path = f"{self.directory.directory}/{name}"
        try:
            files = self.directory.files
            if files.exists(path) and files.read(path) == data:
                return
            files.makedirs(self.directory.directory)
            atomic_write(path, data)
        except (tf.errors.OpError, OSError) as error:
            self._failed(CheckpointError(f"Cannot write {path}: {op_error_text(error)}"))

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

    def _publish(self, step: int, snapshot: Any) -> SavedCheckpoint:
        saved = self.saver.save(step, snapshot)
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
        self.listeners.after_save(saved.step, saved.prefix)
        return saved

    # --- Restoring ----------------------------------------------------------------

    def restore(
        self,
        *,
        current_step: int = 0,
        optimizer_name: str | None = None,
        start_over: StartOver | None = None,
    ) -> Restored | None:
        """Restore per `config.restore` (see `restore.Restorer`); return what was restored, or None.

        With `start_over` the run starts from that instead, after setting the
        directory's checkpoints aside (`restorer.set_aside_to` says where).

        A refused restore (another model's or optimizer's checkpoint, none
        readable where one is required, `restore: none` into a directory of
        another run) closes the manager and leaves the directory as it was:
        the lock file it created is removed, a crashed run's leftovers stay.

        In a cluster only the chief reads its directory; every worker then
        takes the chief's values (a broadcast), so all resume from one step.
        """
        if self.cluster is not None:
            return self._restore_together(current_step, optimizer_name, start_over)
        return self._restore_files(current_step, optimizer_name, start_over)

    def _restore_together(
        self, current_step: int, optimizer_name: str | None, start_over: StartOver | None
    ) -> Restored | None:
        assert self.cluster is not None
        restored: Restored | None = None
        error: BaseException | None = None
        if self.cluster.is_chief:
            try:
                restored = self._restore_files(current_step, optimizer_name, start_over)
            except BaseException as refused:  # told to the others, then raised here
                error = refused
        # 0: refused, 1: nothing restored, 2 + step: restored at step.
        outcome = self.cluster.chief_decides(
            0 if error is not None else 1 if restored is None else 2 + restored.step
        )
        if error is not None:
            raise error
        if outcome == 0:
            self.close(undo=True)
            raise CheckpointError(
                f"The chief refused to restore into {self.config.directory}; this worker "
                f"({self.cluster.task}) stops with it. HINT: the chief's log says why."
            )
        if outcome == 1:
            return None
        # Each worker's own copy, not the aggregate: a copy synced on read still holds
        # this worker's initial value, and the mean over workers would mix it in.
        with primary_copies():
            snapshot = self._variables.snapshot()
        values = self.cluster.broadcast(snapshot.tensors)
        if restored is not None:
            return restored
        step = outcome - 2
        self._variables.assign(Snapshot(snapshot.keys, values))
        self.last_save = LastSave(step=step, time=self._clock())
        self.last_published_step = step
        self._say(f"Took the chief's restored state (step {step}).")
        return Restored(step=step, prefix=f"<the chief's checkpoint at step {step}>")

    def _restore_files(
        self, current_step: int, optimizer_name: str | None, start_over: StartOver | None
    ) -> Restored | None:
        self.wait()  # a write in flight (a restore again in the same run) is no leftover
        try:
            restored = self.restorer.restore(
                self._variables, current_step=current_step, optimizer_name=optimizer_name,
                start_over=start_over,
            )
        except BaseException:
            self.close(undo=True)
            raise
        for name in self.directory.remove_stale_temp_files(keep_spare=self.saver.holds_spare):
            logger.warning("Removed %s/%s, left by an interrupted save.", self.directory.directory, name)
        if restored is None:
            return None
        self.last_save = LastSave(step=restored.step, time=self._clock())
        self.last_published_step = restored.step
        if restored.warm_start:
            what = "optimizer state and step too" if restored.optimizer else "weights only"
            self._say(f"Started from {restored.prefix} ({what}; at step {restored.step}).")
        else:
            self.last_checkpoint = restored.prefix
            self._say(f"Restored {restored.prefix} (step {restored.step}).")
        return restored

    def _say(self, message: str) -> None:
        if self._announce is not None:
            self._announce(message)

