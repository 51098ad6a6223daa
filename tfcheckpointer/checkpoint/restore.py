"""Choosing the checkpoint to restore on start, and restoring it.

`checkpoint.restore: latest` resumes from this run's directory (the shared
resolver, `CheckpointDirectory.candidates`); a prefix or a directory
elsewhere starts this run from it (a warm start) until the run has
checkpoints of its own; `none` restores nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.bundle import check_compatible, is_optimizer_key, read_step
from tfcheckpointer.checkpoint.directory import CheckpointDirectory, is_local
from tfcheckpointer.config.schema import RESTORE_LATEST, RESTORE_NONE
from tfcheckpointer.errors import CheckpointError, RestoreMismatchError

logger = logging.getLogger("tfcheckpointer")


@dataclasses.dataclass(frozen=True)
class Restored:
    """The checkpoint a restore took the variables from."""

    step: int
    prefix: str


class Restorer:
    """Restores per `checkpoint.restore` into a run that writes to `directory`.

    Args:
        directory: This run's own checkpoints.
        restore: `latest`, `none`, or a checkpoint prefix or directory.
    """

    def __init__(self, directory: CheckpointDirectory, restore: str):
        self.directory = directory
        self.restore_from = restore

    def restore(self, variables: Any, *, current_step: int = 0) -> Restored | None:
        """Restore `variables` (an adapter from `variables`); return what was restored.

        Unreadable checkpoints (truncated, missing shard) are skipped with a
        warning, and the newest readable one is used; with `restore: latest`
        unreadable ones of this run's own directory are also set aside
        (`<prefix>.corrupt.*`). When resuming, a model already at or past the
        newest checkpoint's step (a second `fit()` in one process) keeps its
        state rather than going back.
        """
        if self.restore_from == RESTORE_NONE:
            return None
        candidates, required = self._candidates()
        skipped: list[str] = []
        unreadable: list[str] = []
        restored: Restored | None = None
        found: str | None = None
        for prefix in candidates:
            try:
                restored = self._restore_one(variables, prefix, current_step, resuming=not required)
            except RestoreMismatchError:
                raise
            except CheckpointError as error:
                skipped.append(f"{prefix} ({error})")
                if not required:  # our own directory
                    unreadable.append(prefix)
                continue
            found = prefix
            break
        # Only now that no refusal can come: a refused restore changes nothing on disk.
        for name in unreadable:
            aside = self.directory.set_aside(name)
            logger.warning("Set unreadable checkpoint %s aside as %s.", name, aside)
        if found is not None:
            if skipped:
                logger.warning(
                    "Skipped unreadable checkpoint(s): %s; resumed from %s.", "; ".join(skipped), found
                )
            return restored
        if skipped:
            message = "No readable checkpoint; skipped: " + "; ".join(skipped)
            if required:
                raise CheckpointError(message)
            logger.warning("%s. Starting from step %d.", message, current_step)
        return None

    def _candidates(self) -> tuple[list[str], bool]:
        """Checkpoints to try, best first, and whether one of them must be restored.

        A prefix or directory in another directory starts a new run from it (a
        warm start): once this run has checkpoints of its own, a restart resumes
        from those instead of going back to the starting point.
        """
        restore = self.restore_from
        own = self.directory.candidates()
        if restore == RESTORE_LATEST:
            return own, False
        source = restore if tf.io.gfile.isdir(restore) else os.path.dirname(restore)
        if own and not _same_directory(source, self.directory.directory):
            logger.info(
                "checkpoint.restore names %s, but %s holds this run's own checkpoints; "
                "resuming from those.", restore, self.directory.directory,
            )
            return own, False
        if tf.io.gfile.isdir(restore):
            found = CheckpointDirectory(restore, self.directory.basename).candidates()
            if not found:
                raise CheckpointError(
                    f"checkpoint.restore: no checkpoint named {self.directory.basename}-<step> "
                    f"in directory {restore}."
                )
            return found, True
        if not tf.io.gfile.exists(restore + naming.INDEX_SUFFIX):
            raise CheckpointError(
                f"checkpoint.restore: no checkpoint at {restore} "
                f"({restore}{naming.INDEX_SUFFIX} does not exist). HINT: give a prefix such as "
                f"{self.directory.prefix(100)}, a directory, `latest` or `none`."
            )
        return [restore], True

    def _restore_one(
        self, variables: Any, prefix: str, current_step: int, *, resuming: bool
    ) -> Restored | None:
        shapes = variables.shapes()
        optional = {k for k in shapes if is_optimizer_key(k)}
        present = check_compatible(prefix, shapes, optional=optional)
        step, _ = read_step(prefix, present)
        if step is None:
            raise CheckpointError(f"Checkpoint {prefix} has no {naming.GLOBAL_STEP_KEY}.")
        if resuming and 0 < step <= current_step:
            logger.info("Model is at step %d, past %s; not restoring.", current_step, prefix)
            return None
        if optional and not optional & set(present):
            logger.warning(
                "Checkpoint %s has no optimizer state; the optimizer starts fresh.", prefix
            )
        variables.restore(prefix, [k for k in shapes if k in present])
        logger.info("Restored checkpoint step=%d path=%s", step, prefix)
        return Restored(step, prefix)


def _same_directory(a: str, b: str) -> bool:
    if is_local(a) and is_local(b):
        return os.path.realpath(a or ".") == os.path.realpath(b or ".")
    return a.rstrip("/") == b.rstrip("/")
