"""Epoch-end scores of checkpoints, kept in `<directory>/scores.json` so that they outlive the run.

`checkpoint.keep_best` ranks checkpoints by a metric taken at the epoch end
after each was saved: the manager records each epoch's metrics for the
checkpoints saved since the epoch end before. On disk, the scores reach a
resumed run's retention and `tfcheckpointer freeze --checkpoint best`. The
file, keyed by checkpoint name (`epoch` counts from 1, as Keras prints it):

    {"monitor": "val_loss", "mode": "min",
     "checkpoints": {"model.ckpt-80": {"epoch": 2, "metrics": {"loss": 0.41, "val_loss": 0.45}}}}

`monitor` and `mode` are those of the run that wrote it last. A damaged file
is ignored with a warning, as a damaged state file is: scores only ever
protect checkpoints, so losing them costs no checkpoint that recency keeps.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Collection, Mapping
from typing import Any

import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.directory import CheckpointDirectory
from tfcheckpointer.checkpoint.files import atomic_write
from tfcheckpointer.checkpoint.policy import BestK, CheckpointInfo
from tfcheckpointer.checkpoint.storage import files_for
from tfcheckpointer.config.schema import KeepBestConfig
from tfcheckpointer.errors import first_line

logger = logging.getLogger("tfcheckpointer")


@dataclasses.dataclass(frozen=True)
class Score:
    """The metrics of the epoch end that followed one checkpoint."""

    epoch: int
    metrics: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class Scores:
    """The contents of a `scores.json`; empty when there is none."""

    monitor: str | None = None
    mode: str | None = None
    checkpoints: Mapping[str, Score] = dataclasses.field(default_factory=dict)

    def value(self, name: str, monitor: str) -> float | None:
        """Checkpoint `name`'s `monitor` metric, or None when it has none."""
        score = self.checkpoints.get(name)
        return None if score is None else score.metrics.get(monitor)

    def without(self, names: Collection[str]) -> Scores:
        kept = {name: s for name, s in self.checkpoints.items() if name not in names}
        return dataclasses.replace(self, checkpoints=kept)


def scores_path(directory: str) -> str:
    return f"{directory.rstrip('/')}/{naming.SCORES_FILENAME}"


def read_scores(directory: str) -> Scores:
    """The scores recorded in `directory`; empty when there are none or the file is damaged."""
    path = scores_path(directory)
    try:
        data = json.loads(files_for(path).read(path).decode("utf-8"))
        return Scores(
            monitor=data.get("monitor"),
            mode=data.get("mode"),
            checkpoints={
                name: Score(int(entry["epoch"]), _numbers(entry["metrics"]))
                for name, entry in data.get("checkpoints", {}).items()
            },
        )
    except tf.errors.NotFoundError:
        return Scores()
    except (ValueError, TypeError, KeyError, AttributeError, tf.errors.OpError) as error:
        logger.warning("Ignoring %s: %s", path, first_line(error) or type(error).__name__)
        return Scores()


def write_scores(directory: str, scores: Scores) -> None:
    """Atomically replace `directory`'s scores with `scores`."""
    content = {
        "monitor": scores.monitor,
        "mode": scores.mode,
        "checkpoints": {
            name: {"epoch": score.epoch, "metrics": dict(score.metrics)}
            for name, score in sorted(scores.checkpoints.items(), key=_by_step)
        },
    }
    atomic_write(scores_path(directory), (json.dumps(content, indent=2) + "\n").encode())


def record_epoch(
    directory: str,
    names: Collection[str],
    *,
    epoch: int,
    metrics: Mapping[str, Any],
    keep_best: KeepBestConfig,
) -> None:
    """Give the checkpoints `names` this epoch's `metrics` as their score.

    Only checkpoints on disk are recorded (a failed save is not), and the
    entries of checkpoints since deleted are dropped.
    """
    on_disk = {prefix.rsplit("/", 1)[-1] for prefix in CheckpointDirectory(directory).prefixes()}
    old = read_scores(directory)
    entries = {name: s for name, s in old.checkpoints.items() if name in on_disk}
    entries.update({name: Score(epoch, _numbers(metrics)) for name in names if name in on_disk})
    write_scores(directory, Scores(keep_best.monitor, keep_best.mode, entries))


def checkpoint_score(prefix: str) -> dict[str, Any] | None:
    """What the frozen graph's sidecar says of the score of checkpoint `prefix`, or None."""
    directory, _, name = prefix.rpartition("/")
    scores = read_scores(directory or ".")
    score = scores.checkpoints.get(name)
    if score is None:
        return None
    value = score.metrics.get(scores.monitor) if scores.monitor else None
    return {
        "monitor": scores.monitor, "mode": scores.mode, "value": value,
        "epoch": score.epoch, "metrics": dict(score.metrics),
    }


def best_checkpoint(
    directory: str, basename: str | None, keep_best: KeepBestConfig | None = None
) -> tuple[str | None, str | None]:
    """The prefix of `directory`'s checkpoint with the best score, and the monitor it was ranked by.

    `keep_best` says which metric and direction; None takes those recorded
    in the scores file. The prefix is None when no checkpoint on disk has a
    score for that metric; the monitor is None when none is known at all.
    """
    scores = read_scores(directory)
    monitor = keep_best.monitor if keep_best is not None else scores.monitor
    mode = keep_best.mode if keep_best is not None else scores.mode
    if monitor is None or mode is None:
        return None, None
    candidates = []
    for prefix in CheckpointDirectory(directory, basename).prefixes():
        name = prefix.rsplit("/", 1)[-1]
        info = CheckpointInfo(naming.step_of_prefix(name) or 0, 0.0, score=scores.value(name, monitor))
        candidates.append((info, prefix))
    best = BestK(1, mode).best([info for info, _ in candidates])
    return next((p for info, p in candidates if best and info is best[0]), None), monitor


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics that are finite numbers, as floats."""
    numbers = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        # JSON has no NaN or infinity, and a diverged epoch is no best: both are no score.
        if math.isfinite(number):
            numbers[str(key)] = number
    return numbers


def _by_step(item: tuple[str, Score]) -> tuple[int, str]:
    return naming.step_of_prefix(item[0]) or 0, item[0]
