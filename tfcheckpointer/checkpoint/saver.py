"""Publishing one save: check the space, write the bundle, point the state file at it, prune."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import tensorflow as tf

from tfcheckpointer.checkpoint import naming, spare
from tfcheckpointer.checkpoint.bundle import SavedCheckpoint, Snapshot, write_checkpoint
from tfcheckpointer.checkpoint.directory import CheckpointDirectory, is_local
from tfcheckpointer.checkpoint.policy import CheckpointInfo, RetentionPolicy
from tfcheckpointer.checkpoint.scores import Scores, read_scores, write_scores
from tfcheckpointer.checkpoint.tf_utils import op_error_text
from tfcheckpointer.errors import CheckpointError

logger = logging.getLogger("tfcheckpointer")


class CheckpointSaver:
    """Writes `<basename>-<step>` checkpoints into one directory and keeps what retention says.

    With `spare`, the data file of a checkpoint that retention deletes is kept
    (`CheckpointDirectory.spare_path`) until the next save, which takes it
    over as its own data file and overwrites it in place, where nothing else
    can see it (`spare.claim`; else it removes it just before it writes):
    the write lands in memory already in place. Written into memory freed
    seconds earlier instead, a save can cost several times more on a virtual
    machine that hands freed memory back to its host (virtio-balloon free
    page reporting, after ~2 s): every page must be faulted in from the host
    again (README, Performance, has the figures). It costs the disk space of
    one data file while training; `release_spare` (at the end) removes it.

    Args:
        directory: Where the checkpoints go.
        retention: Which checkpoints to delete after each save, whichever
            run wrote them.
        extra_files: Suffixes (`.meta`) and the bytes written beside every
            checkpoint and published with it.
        monitor: The `keep_best` metric: retention sees each checkpoint's
            recorded score for it (`scores.json`); None reads no scores.
        spare: Keep the last deleted data file until the next save (above);
            only a local directory does, and not under `max_total_bytes` (the
            spare would overrun the cap).
    """

    def __init__(
        self,
        directory: CheckpointDirectory,
        retention: RetentionPolicy,
        extra_files: Mapping[str, bytes] | None = None,
        *,
        monitor: str | None = None,
        spare: bool = False,
    ):
        self.directory = directory
        self.retention = retention
        self.extra_files = dict(extra_files or {})
        self.monitor = monitor
        self.spare = spare and is_local(directory.directory) and retention.max_total_bytes is None
        self.holds_spare = False
        """Whether this saver's own retention left the spare file now on disk."""

    def save(self, step: int, snapshot: Snapshot) -> SavedCheckpoint:
        """Write, publish, point the state file at it, then prune."""
        prefix = self.directory.prefix(step)
        extra_bytes = sum(len(data) for data in self.extra_files.values())
        reuse = None
        try:
            reuse = self._claim_spare()
            # A claimed spare is overwritten: it needs no new space.
            self.directory.check_free_space(snapshot.nbytes + extra_bytes - (reuse.size if reuse else 0))
            self._unpublish(step)
            scores = self._scores_without(step)
            seconds = write_checkpoint(prefix, snapshot, extra_files=self.extra_files, spare=reuse)
        except (tf.errors.OpError, OSError) as error:
            raise CheckpointError(f"Cannot write checkpoint {prefix}: {op_error_text(error)}") from error
        finally:
            if reuse is not None:
                reuse.discard()  # a failed save's: the write took it otherwise
        try:
            on_disk = self._scored(self.directory.list_checkpoints(), scores)
            # The checkpoint just written stays, even beside higher steps of an earlier run.
            doomed = [c for c in self.retention.to_delete(on_disk) if c.step != step]
            doomed_steps = {c.step for c in doomed}
            self.directory.write_state(
                [c for c in on_disk if c.step not in doomed_steps], latest=step
            )
            for checkpoint in doomed:
                keep = self.spare and not self.holds_spare
                self.holds_spare |= self.directory.delete(checkpoint.step, spare=keep)
            size = next(c.bytes for c in on_disk if c.step == step)
        except (tf.errors.OpError, OSError) as error:
            raise CheckpointError(
                f"Wrote {prefix} but could not update {self.directory.directory}: {error}"
            ) from error
        return SavedCheckpoint(step, prefix, size, seconds)

    def _claim_spare(self) -> spare.Claim | None:
        """The spare this saver kept, claimed for this save to overwrite (`spare.claim`), or None."""
        if not self.holds_spare:
            return None
        self.holds_spare = False
        return spare.claim(self.directory.spare_path)

    def release_spare(self) -> None:
        """Remove the spare data file this saver kept, if any; a failure is only logged
        (the spare is a speed-up: it never stops a save). A spare that another run left
        is not this saver's: the next run's clean-up removes it."""
        if not self.holds_spare:
            return
        self.holds_spare = False
        try:
            self.directory.release_spare()
        except (tf.errors.OpError, OSError) as error:
            logger.warning("Cannot remove %s: %s", self.directory.spare_path, op_error_text(error))

    def _scores_without(self, step: int) -> Scores | None:
        """The recorded scores, less one for `step`, which leaves the file too: an earlier
        run's score there is not the score of the checkpoint about to replace it."""
        if self.monitor is None:
            return None
        directory = self.directory.directory
        scores = read_scores(directory)
        name = self.directory.name(step)
        if name in scores.checkpoints:
            scores = scores.without({name})
            try:
                write_scores(directory, scores)
            except (tf.errors.OpError, OSError) as error:
                raise CheckpointError(f"Cannot update the scores in {directory}: {error}") from error
        return scores

    def _scored(self, checkpoints: list[CheckpointInfo], scores: Scores | None) -> list[CheckpointInfo]:
        if scores is None or self.monitor is None:
            return checkpoints
        return [
            dataclasses.replace(c, score=scores.value(self.directory.name(c.step), self.monitor))
            for c in checkpoints
        ]

    def _unpublish(self, step: int) -> None:
        """Before a step is written again (a restart that went back), point the
        state file away from its old files, so it never names a half-replaced one."""
        prefix = self.directory.prefix(step)
        try:
            # The usual case, a new step, costs one existence check, not a listing.
            if not self.directory.files.exists(prefix + naming.INDEX_SUFFIX):
                return
            logger.warning("Replacing the checkpoint %s that was already on disk.", prefix)
            others = [c for c in self.directory.list_checkpoints() if c.step != step]
            self.directory.write_state(others, latest=others[-1].step if others else None)
            self.directory.delete(step)
        except (tf.errors.OpError, OSError) as error:
            raise CheckpointError(f"Cannot replace {prefix}: {error}") from error
