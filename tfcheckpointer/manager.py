"""The checkpoint manager: owns the step, the policies and the writer.

Adapters (the Keras callback, later a TF1 session hook) turn their hooks into
calls on this object; it asks the save policy, writes through the
`CheckpointWriter`, then applies retention to every checkpoint in the
directory, including those left by earlier runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from tfcheckpointer import naming
from tfcheckpointer.config import CheckpointConfig
from tfcheckpointer.errors import CheckpointError
from tfcheckpointer.policy import LastSave, RetentionPolicy, save_policy
from tfcheckpointer.writer import (
    CheckpointWriter,
    SavedCheckpoint,
    check_compatible,
    checkpoint_shapes,
)

logger = logging.getLogger("tfcheckpointer")

RESTORE_LATEST = "latest"
RESTORE_NONE = "none"


class CheckpointManager:
    """Saves `variables` on the configured cadence and restores them on resume.

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
            config.max_to_keep, config.keep_checkpoint_every_n_hours
        )
        self._clock = clock
        self._announce = announce
        self._variables: Mapping[str, Any] = {}
        self.last_save = LastSave(step=0, time=clock())
        self.last_checkpoint: str | None = None

    def attach(self, variables: Mapping[str, Any], *, step: int) -> None:
        """Bind the variables to save; `step` is the global step they are at now."""
        self._variables = variables
        self.writer.bind(variables)
        self.last_save = LastSave(step=step, time=self._clock())

    def restore(self, *, current_step: int = 0) -> int | None:
        """Restore per `config.restore`; return the restored step, or None.

        With `restore: latest`, a model already at or past the newest
        checkpoint's step (a second `fit()` in the same process) keeps its
        state rather than going back.
        """
        prefix = self._restore_target()
        if prefix is None:
            return None
        optional = {k for k in self._variables if k.startswith(naming.OPTIMIZER_SCOPE + "/")}
        check_compatible(prefix, self._variables, optional=optional)
        step = int(tf.train.load_checkpoint(prefix).get_tensor(naming.GLOBAL_STEP_KEY))
        if self.config.restore == RESTORE_LATEST and 0 < step <= current_step:
            logger.info("Model is at step %d, past %s; not restoring.", current_step, prefix)
            return None
        present = set(checkpoint_shapes(prefix))
        if optional and not optional & present:
            logger.warning(
                "Checkpoint %s has no optimizer state; the optimizer starts fresh.", prefix
            )
        self.writer.restore(prefix, {k: v for k, v in self._variables.items() if k in present})
        self.last_save = LastSave(step=step, time=self._clock())
        self.last_checkpoint = prefix
        logger.info("Restored checkpoint step=%d path=%s", step, prefix)
        self._say(f"Restored {prefix} (step {step}).")
        return step

    def _restore_target(self) -> str | None:
        restore = self.config.restore
        if restore == RESTORE_NONE:
            return None
        if restore == RESTORE_LATEST:
            return self.writer.latest()
        if tf.io.gfile.isdir(restore):
            found = CheckpointWriter(restore, self.config.basename).latest()
            if found is None:
                raise CheckpointError(
                    f"checkpoint.restore: no checkpoint named {self.config.basename}-<step> "
                    f"in directory {restore}."
                )
            return found
        if not tf.io.gfile.exists(restore + naming.INDEX_SUFFIX):
            raise CheckpointError(
                f"checkpoint.restore: no checkpoint at {restore} "
                f"({restore}{naming.INDEX_SUFFIX} does not exist). HINT: give a prefix such as "
                f"{self.writer.prefix(100)}, a directory, `latest` or `none`."
            )
        return restore

    def on_step(self, step: int) -> SavedCheckpoint | None:
        """Save if a checkpoint is due at `step`."""
        if self.save_policy.should_save(step, self._clock(), self.last_save):
            return self.save(step)
        return None

    def on_end(self, step: int) -> SavedCheckpoint | None:
        """Save the final step unless it is saved already."""
        if self.config.save_at_train_end and step > self.last_save.step:
            return self.save(step)
        return None

    def save(self, step: int) -> SavedCheckpoint:
        """Write a checkpoint now, point the state file at it, then prune."""
        saved = self.writer.save(step)
        self.last_save = LastSave(step=step, time=self._clock())
        self.last_checkpoint = saved.prefix
        on_disk = self.writer.list_checkpoints()
        # The checkpoint just written stays, even beside higher steps of an earlier run.
        doomed = [c for c in self.retention.to_delete(on_disk) if c.step != step]
        doomed_steps = {c.step for c in doomed}
        self.writer.write_state([c for c in on_disk if c.step not in doomed_steps], latest=step)
        for checkpoint in doomed:
            self.writer.delete(checkpoint.step)
        logger.info(
            "Saved checkpoint step=%d path=%s bytes=%d seconds=%.3f",
            saved.step, saved.prefix, saved.bytes, saved.seconds,
        )
        self._say(
            f"Saved checkpoint {saved.prefix} (step {saved.step}, "
            f"{saved.bytes} bytes, {saved.seconds:.2f}s)."
        )
        return saved

    def _say(self, message: str) -> None:
        if self._announce is not None:
            self._announce(message)
