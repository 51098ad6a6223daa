"""When to save and what to keep: pure decisions over step numbers, times and scores.

Nothing here touches TensorFlow or the disk, so the rules are tested with
plain numbers. The manager asks these objects and does the I/O itself.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Protocol

SECONDS_PER_HOUR = 3600.0


@dataclasses.dataclass(frozen=True)
class LastSave:
    """The newest checkpoint's step and the time it was written (or the run began)."""

    step: int
    time: float


class SavePolicy(Protocol):
    def should_save(self, step: int, now: float, last: LastSave) -> bool:
        """Whether a checkpoint is due at optimizer step `step`."""


@dataclasses.dataclass(frozen=True)
class StepIntervalPolicy:
    """Due at the multiples of `every_n_steps` of the global step.

    A multiple passed over inside an execution block (`steps_per_execution`)
    is saved at the first step reported at or past it, so the cadence does not
    depend on where a run was restarted.
    """

    every_n_steps: int

    def should_save(self, step: int, now: float, last: LastSave) -> bool:
        return step // self.every_n_steps > last.step // self.every_n_steps


@dataclasses.dataclass(frozen=True)
class TimeIntervalPolicy:
    """Due once `every_n_seconds` have passed since the last save and the step moved."""

    every_n_seconds: float

    def should_save(self, step: int, now: float, last: LastSave) -> bool:
        return step > last.step and now - last.time >= self.every_n_seconds


@dataclasses.dataclass(frozen=True)
class AnySavePolicy:
    """Due when any of `policies` is due."""

    policies: tuple[SavePolicy, ...]

    def should_save(self, step: int, now: float, last: LastSave) -> bool:
        return any(policy.should_save(step, now, last) for policy in self.policies)


def save_policy(
    *, every_n_steps: int | None = None, every_n_seconds: float | None = None
) -> SavePolicy:
    """The policy for the configured triggers (at least one must be given)."""
    policies: list[SavePolicy] = []
    if every_n_steps is not None:
        policies.append(StepIntervalPolicy(every_n_steps))
    if every_n_seconds is not None:
        policies.append(TimeIntervalPolicy(every_n_seconds))
    if not policies:
        raise ValueError("Give every_n_steps or every_n_seconds (or both).")
    return policies[0] if len(policies) == 1 else AnySavePolicy(tuple(policies))


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint on disk: its step, when it was written (seconds since the epoch), its size.

    `score` is its `keep_best` metric at the epoch end after it, or None
    when it has none (no epoch end came yet, the metric was not logged).
    """

    step: int
    timestamp: float
    bytes: int = 0
    score: float | None = None


@dataclasses.dataclass(frozen=True)
class BestK:
    """The `k` checkpoints with the best score: the lowest with `mode="min"`, the highest with `"max"`.

    Checkpoints without a finite score do not compete (a NaN loss is no
    best). Of equal scores the higher step wins: it has trained longer.
    """

    k: int
    mode: str

    def best(self, checkpoints: Sequence[CheckpointInfo]) -> list[CheckpointInfo]:
        """The best `k` of `checkpoints`, best first."""
        sign = 1.0 if self.mode == "max" else -1.0
        ranked = sorted(
            ((sign * c.score, c.step, c) for c in checkpoints
             if c.score is not None and math.isfinite(c.score)),
            key=lambda ranking: ranking[:2], reverse=True,
        )
        return [c for *_, c in ranked[: self.k]]


@dataclasses.dataclass(frozen=True)
class RetentionPolicy:
    """Which checkpoints to delete, whichever run wrote them.

    The newest `max_to_keep` are kept (all of them when it is None). Of the
    older ones, with `keep_checkpoint_every_n_hours` set, the oldest is kept and
    then each first one written at least that many hours after the last kept.
    The choice depends only on what is on disk, so a restarted run makes the
    same choice as the run that wrote the files, and deleting never changes
    which of the survivors are kept. `max_total_bytes` then caps the total
    size, dropping the oldest survivors first; the newest is always kept.

    With `keep_best`, the best k scored checkpoints are never deleted, by
    neither rule: the newest and the best may together exceed `max_to_keep`
    and `max_total_bytes`. A checkpoint that drops out of the best k goes by
    the other rules again.
    """

    max_to_keep: int | None = None
    keep_checkpoint_every_n_hours: float | None = None
    max_total_bytes: int | None = None
    keep_best: BestK | None = None

    def to_delete(self, checkpoints: Sequence[CheckpointInfo]) -> list[CheckpointInfo]:
        ordered = sorted(checkpoints, key=lambda c: c.step)
        best = self.keep_best.best(ordered) if self.keep_best is not None else []
        doomed = [c for c in self._by_count(ordered) if c not in best]
        if self.max_total_bytes is not None:
            survivors = [c for c in ordered if c not in doomed]
            total = sum(c.bytes for c in best)
            for index, checkpoint in enumerate(reversed(survivors)):
                if checkpoint in best:
                    continue
                total += checkpoint.bytes
                if index > 0 and total > self.max_total_bytes:
                    doomed.append(checkpoint)
        return sorted(doomed, key=lambda c: c.step)
    def _by_count(self, ordered: list[CheckpointInfo]) -> list[CheckpointInfo]:
        if self.max_to_keep is None or len(ordered) <= self.max_to_keep:
            return []
        older = ordered[: len(ordered) - self.max_to_keep]
        if self.keep_checkpoint_every_n_hours is None:
            return older
        interval = self.keep_checkpoint_every_n_hours * SECONDS_PER_HOUR
        doomed = []
        last_kept: float | None = None
        for checkpoint in older:
            if last_kept is None or checkpoint.timestamp >= last_kept + interval:
                last_kept = checkpoint.timestamp
            else:
                doomed.append(checkpoint)
        return doomed
