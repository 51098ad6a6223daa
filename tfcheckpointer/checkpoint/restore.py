"""Choosing the checkpoint to restore on start, and restoring it.

`checkpoint.restore: latest` resumes from this run's directory (the shared
resolver, `CheckpointDirectory.candidates`); a prefix or a directory
elsewhere starts this run from it (a warm start) until the run has
checkpoints of its own; `none` restores nothing. A caller that knows the
directory's checkpoints belong to a finished run that must not be built on
(`export.warm_start`) starts over instead (`StartOver`).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from typing import Any

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.bundle import (
    check_compatible,
    is_optimizer_key,
    is_optimizer_state,
    read_step,
)
from tfcheckpointer.checkpoint.directory import CheckpointDirectory, same_directory
from tfcheckpointer.checkpoint.storage import LocalCopies, files_for
from tfcheckpointer.config.schema import RESTORE_LATEST, RESTORE_NONE
from tfcheckpointer.errors import CheckpointError, OptimizerMismatchError, RestoreMismatchError

logger = logging.getLogger("tfcheckpointer")


@dataclasses.dataclass(frozen=True)
class Restored:
    """The checkpoint a restore took the variables from."""

    step: int
    """The step the run is at after the restore: the checkpoint's, or the run's own for a
    warm start that took the weights only."""
    prefix: str
    warm_start: bool = False
    """Whether the checkpoint came from elsewhere (not this run's directory)."""
    optimizer: bool = True
    """Whether optimizer state (slots, step) was restored."""


@dataclasses.dataclass(frozen=True)
class StartOver:
    """Start a new run instead of resuming: restore `prefix` (or nothing), then set the directory aside.

    `prefix` (a promoted export's copy of its checkpoint) is restored with its
    full state -- weights, optimizer slots and step, though not the learning
    rate, which `compile` set -- like a warm start with `restore_optimizer`; the directory's checkpoints then move into a
    `set-aside-<time>` subdirectory, where they stay restorable, so that no
    step of the new run collides with theirs.
    """

    prefix: str | None = None


class Restorer:
    """Restores per `checkpoint.restore` into a run that writes to `directory`.

    Args:
        directory: This run's own checkpoints.
        restore: `latest`, `none`, or a checkpoint prefix or directory.
        restore_optimizer: In a warm start, also restore the optimizer's slots
            and the step (never its learning rate, which `compile` set).
        on_existing: With `restore: none`, what to do with checkpoints the
            directory already holds: `error`, `keep` or `set_aside`.
    """

    def __init__(
        self,
        directory: CheckpointDirectory,
        restore: str,
        *,
        restore_optimizer: bool = False,
        on_existing: str = "error",
    ):
        self.directory = directory
        self.restore_from = restore
        self.restore_optimizer = restore_optimizer
        self.on_existing = on_existing
        self.set_aside_to: str | None = None
        """Where the last `restore` moved the directory's checkpoints, if it did."""
        self.copies = LocalCopies()
        """Downloaded copies of checkpoints at URLs TensorFlow cannot read; the manager
        clears them when it closes (a TF1 session restores from one after `restore`)."""

    def restore(
        self,
        variables: Any,
        *,
        current_step: int = 0,
        optimizer_name: str | None = None,
        start_over: StartOver | None = None,
    ) -> Restored | None:
        """Restore `variables` (an adapter from `variables`); return what was restored.

        Unreadable checkpoints (truncated, missing shard) are skipped with a
        warning, and the newest readable one is used; with `restore: latest`
        unreadable ones of this run's own directory are also set aside
        (`<prefix>.corrupt.*`). When resuming, a model already at or past the
        newest checkpoint's step (a second `fit()` in one process) keeps its
        state rather than going back. `optimizer_name` names the model's
        optimizer in the error raised when the checkpoint holds another's state.
        `start_over` replaces all of that (see `StartOver`).
        """
        self.set_aside_to = None
        if start_over is not None:
            return self._start_over(variables, start_over, current_step, optimizer_name)
        if self.restore_from == RESTORE_NONE:
            self._start_fresh()
            return None
        candidates, required, warm_start = self._candidates()
        skipped: list[str] = []
        unreadable: list[str] = []
        restored: Restored | None = None
        found: str | None = None
        for prefix in candidates:
            try:
                restored = self._restore_one(
                    variables, prefix, current_step, warm_start=warm_start,
                    optimizer_name=optimizer_name,
                )
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

    def _start_fresh(self) -> None:
        """`restore: none`: refuse to mix with checkpoints already there, unless told what to do."""
        existing = self.directory.prefixes()
        if not existing:
            return
        names = ", ".join(p.rsplit("/", 1)[-1] for p in existing[:3])
        names += f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        if self.on_existing == "keep":
            logger.info(
                "checkpoint.restore is none; keeping the %d checkpoint(s) already in %s (%s).",
                len(existing), self.directory.directory, names,
            )
            return
        if self.on_existing == "set_aside":
            target = self._set_aside_all()
            logger.warning(
                "checkpoint.restore is none; moved the %d checkpoint(s) already in %s (%s) to %s.",
                len(existing), self.directory.directory, names, target,
            )
            return
        raise CheckpointError(
            f"checkpoint.restore is none, but {self.directory.directory} already holds "
            f"{len(existing)} checkpoint(s) ({names}); a fresh run there would mix with them "
            "(retention counts them, and a later resume may pick theirs). HINT: set "
            "checkpoint.on_existing: set_aside to move them into a subdirectory, or keep to "
            "leave them; restore: latest resumes from them; or use another directory."
        )

    def _start_over(
        self, variables: Any, start_over: StartOver, current_step: int, optimizer_name: str | None
    ) -> Restored | None:
        restored = None
        if start_over.prefix is not None:
            restored = self._restore_one(
                variables, start_over.prefix, current_step, warm_start=True,
                optimizer_name=optimizer_name, full_state=True,
            )
        # Only now that the restore was accepted: a refused one changes nothing on disk.
        if self.directory.prefixes():
            self._set_aside_all()
        return restored

    def _set_aside_all(self) -> str:
        """Move the directory's checkpoints into `set-aside-<now>`; return where."""
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
        self.set_aside_to = self.directory.set_aside_all(stamp)
        return self.set_aside_to

    def _candidates(self) -> tuple[list[str], bool, bool]:
        """Checkpoints to try, best first; whether one must restore; whether they come from elsewhere.

        A prefix or directory in another directory starts a new run from it (a
        warm start): once this run has checkpoints of its own, a restart resumes
        from those instead of going back to the starting point.
        """
        restore = self.restore_from
        own = self.directory.candidates()
        if restore == RESTORE_LATEST:
            return own, False, False
        files = files_for(restore)
        source = restore if files.isdir(restore) else os.path.dirname(restore)
        if own and not same_directory(source, self.directory.directory):
            logger.info(
                "checkpoint.restore names %s, but %s holds this run's own checkpoints; "
                "resuming from those.", restore, self.directory.directory,
            )
            return own, False, False
        if files.isdir(restore):
            found = CheckpointDirectory(restore, self.directory.basename).candidates()
            if not found:
                raise CheckpointError(
                    f"checkpoint.restore: no checkpoint named {self.directory.basename}-<step> "
                    f"in directory {restore}."
                )
            return found, True, not same_directory(restore, self.directory.directory)
        if not files.exists(restore + naming.INDEX_SUFFIX):
            raise CheckpointError(
                f"checkpoint.restore: no checkpoint at {restore} "
                f"({restore}{naming.INDEX_SUFFIX} does not exist). HINT: give a prefix such as "
                f"{self.directory.prefix(100)}, a directory, `latest` or `none`."
            )
        return [restore], True, not same_directory(source, self.directory.directory)

    def _restore_one(
        self,
        variables: Any,
        prefix: str,
        current_step: int,
        *,
        warm_start: bool,
        optimizer_name: str | None,
        full_state: bool = False,
    ) -> Restored | None:
        # A checkpoint TensorFlow cannot read where it is (`s3://`) is read from a local copy.
        restored = self._restore_local(
            variables, self.copies.fetch(prefix), current_step, warm_start=warm_start,
            optimizer_name=optimizer_name, source=prefix, full_state=full_state,
        )
        return None if restored is None else dataclasses.replace(restored, prefix=prefix)

    def _restore_local(
        self,
        variables: Any,
        prefix: str,
        current_step: int,
        *,
        warm_start: bool,
        optimizer_name: str | None,
        source: str,
        full_state: bool = False,
    ) -> Restored | None:
        """Restore from `prefix`, a local copy of the checkpoint at `source` (or `source` itself)."""
        shapes = variables.shapes()
        with_optimizer = not warm_start or self.restore_optimizer or full_state
        if with_optimizer:
            # A warm start never takes the learning rate: the one `compile` set is the point.
            wanted = {k: s for k, s in shapes.items() if not (warm_start and _is_learning_rate(k))}
        else:
            wanted = {k: s for k, s in shapes.items() if not is_optimizer_state(k)}
        optional = {k for k in wanted if is_optimizer_key(k)}
        present = check_compatible(prefix, wanted, optional=optional, name=source)
        step, _ = read_step(prefix, present)
        if step is None:
            raise CheckpointError(f"Checkpoint {prefix} has no {naming.GLOBAL_STEP_KEY}.")
        if not warm_start and 0 < step <= current_step:
            logger.info("Model is at step %d, past %s; not restoring.", current_step, source)
            return None
        if with_optimizer and optional:
            model_keys = [k for k in shapes if not is_optimizer_state(k)]
            stored_slots, our_slots = _slot_names(present, model_keys), _slot_names(shapes, model_keys)
            if not any(is_optimizer_key(k) for k in present):
                logger.warning(
                    "Checkpoint %s has no optimizer state; the optimizer starts fresh.", source
                )
            elif stored_slots and our_slots and stored_slots != our_slots:
                raise OptimizerMismatchError(
                    source,
                    stored=sorted(stored_slots),
                    model=sorted(our_slots),
                    optimizer_name=optimizer_name,
                    warm_start=warm_start,
                )
        variables.restore(prefix, [k for k in wanted if k in present])
        logger.info(
            "Restored checkpoint step=%d path=%s warm_start=%s optimizer=%s",
            step, source, warm_start, with_optimizer,
        )
        return Restored(
            step if with_optimizer else current_step, prefix,
            warm_start=warm_start, optimizer=with_optimizer,
        )


def _is_learning_rate(key: str) -> bool:
    return is_optimizer_key(key) and key.rsplit("/", 1)[-1] == "learning_rate"


def _slot_names(keys: Any, model_keys: list[str]) -> set[str]:
    """The names of the per-variable optimizer slots among `keys` (`momentum`, `velocity`, ...).

    Slots are `optimizer/<model key>/<slot>`. Optimizer-wide state (a constant
    learning rate, which a schedule does not have; a loss scale) does not say
    which kind of optimizer it is, so it is left out.
    """
    prefixes = sorted((f"{naming.OPTIMIZER_SCOPE}/{k}/" for k in model_keys), key=len, reverse=True)
    slots = set()
    for key in keys:
        owner = next((p for p in prefixes if key.startswith(p)), None)
        if owner is not None:
            slots.add(key[len(owner):])
    return slots
