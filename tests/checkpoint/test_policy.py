"""Save and retention policies: pure rules over steps and times, no TensorFlow."""

from __future__ import annotations

import pytest

from tfcheckpointer.checkpoint.policy import (
    AnySavePolicy,
    BestK,
    CheckpointInfo,
    LastSave,
    RetentionPolicy,
    StepIntervalPolicy,
    TimeIntervalPolicy,
    save_policy,
)

HOUR = 3600.0


def saved_steps(policy, reported_steps, *, start=0):
    """The steps at which `policy` saves when the loop reports `reported_steps`."""
    last, saved = LastSave(start, 0.0), []
    for step in reported_steps:
        if policy.should_save(step, 0.0, last):
            saved.append(step)
            last = LastSave(step, 0.0)
    return saved


def test_step_interval_saves_at_multiples():
    assert saved_steps(StepIntervalPolicy(5), range(1, 21)) == [5, 10, 15, 20]


def test_step_interval_with_blocks_saves_at_first_step_past_each_multiple():
    # steps_per_execution=3 reports 3, 6, 9, ...: due 5 -> 6, 10 -> 12, 15 -> 15.
    assert saved_steps(StepIntervalPolicy(5), range(3, 22, 3)) == [6, 12, 15, 21]


def test_step_interval_cadence_survives_restart():
    uninterrupted = saved_steps(StepIntervalPolicy(4), range(1, 17))
    resumed = saved_steps(StepIntervalPolicy(4), range(7, 17), start=6)
    assert [s for s in uninterrupted if s > 6] == resumed == [8, 12, 16]


def test_time_interval_needs_time_and_progress():
    policy = TimeIntervalPolicy(60)
    last = LastSave(step=10, time=1000.0)
    assert not policy.should_save(11, 1059.0, last)
    assert policy.should_save(11, 1060.0, last)
    assert not policy.should_save(10, 5000.0, last)


def test_any_policy_saves_when_either_is_due():
    policy = save_policy(every_n_steps=100, every_n_seconds=60)
    assert isinstance(policy, AnySavePolicy)
    last = LastSave(step=0, time=0.0)
    assert policy.should_save(100, 1.0, last)
    assert policy.should_save(3, 61.0, last)
    assert not policy.should_save(3, 1.0, last)


def test_save_policy_needs_a_trigger():
    with pytest.raises(ValueError, match="every_n_steps or every_n_seconds"):
        save_policy()


def checkpoints(*pairs):
    return [CheckpointInfo(step, time) for step, time in pairs]


def test_retention_keeps_newest_n_whatever_the_input_order():
    found = checkpoints((30, 3.0), (10, 1.0), (40, 4.0), (20, 2.0))
    doomed = RetentionPolicy(max_to_keep=2).to_delete(found)
    assert [c.step for c in doomed] == [10, 20]


@pytest.mark.parametrize("max_to_keep", [None, 4, 10])
def test_retention_deletes_nothing_within_the_limit(max_to_keep):
    found = checkpoints((1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0))
    assert RetentionPolicy(max_to_keep=max_to_keep).to_delete(found) == []


def test_retention_keeps_one_every_n_hours_of_the_older_ones():
    # One checkpoint every 20 minutes for 3 hours; keep the newest 2 and one an hour.
    found = checkpoints(*[(i, i * HOUR / 3) for i in range(10)])
    policy = RetentionPolicy(max_to_keep=2, keep_checkpoint_every_n_hours=1)
    kept = sorted(set(c.step for c in found) - {c.step for c in policy.to_delete(found)})
    assert kept == [0, 3, 6, 8, 9]


def test_retention_is_stable_when_rerun_on_the_survivors():
    """A restarted run must not delete what an earlier run kept."""
    policy = RetentionPolicy(max_to_keep=2, keep_checkpoint_every_n_hours=1)
    on_disk: list[CheckpointInfo] = []
    for i in range(12):
        on_disk.append(CheckpointInfo(i, i * HOUR / 4))
        doomed = {c.step for c in policy.to_delete(on_disk)}
        on_disk = [c for c in on_disk if c.step not in doomed]
    assert [c.step for c in on_disk] == [0, 4, 8, 10, 11]
    assert policy.to_delete(on_disk) == []


def test_total_bytes_cap_drops_the_oldest_and_keeps_the_newest():
    found = [CheckpointInfo(step, float(step), 40) for step in (1, 2, 3, 4)]
    doomed = RetentionPolicy(max_total_bytes=100).to_delete(found)
    assert [c.step for c in doomed] == [1, 2]
    only_newest = RetentionPolicy(max_total_bytes=10).to_delete(found)
    assert [c.step for c in only_newest] == [1, 2, 3]


def test_total_bytes_cap_applies_after_the_count():
    found = [CheckpointInfo(step, float(step), 40) for step in (1, 2, 3, 4)]
    doomed = RetentionPolicy(max_to_keep=3, max_total_bytes=100).to_delete(found)
    assert [c.step for c in doomed] == [1, 2]


# --- Best k --------------------------------------------------------------------


def scored(*pairs):
    """Checkpoints at steps 1, 2, ... written an hour apart, with these (step, score) pairs."""
    return [CheckpointInfo(step, step * HOUR, 40, score) for step, score in pairs]


def kept_steps(policy, found):
    doomed = {c.step for c in policy.to_delete(found)}
    return [c.step for c in found if c.step not in doomed]


@pytest.mark.parametrize(("mode", "best"), [("min", [2, 4]), ("max", [1, 3])])
def test_best_k_survive_max_to_keep(mode, best):
    found = scored((1, 0.9), (2, 0.1), (3, 0.8), (4, 0.2), (5, 0.5), (6, 0.6))
    policy = RetentionPolicy(max_to_keep=1, keep_best=BestK(2, mode))
    assert kept_steps(policy, found) == best + [6]


def test_best_k_ranks_only_finite_scores():
    found = scored((1, None), (2, float("nan")), (3, 0.5), (4, None))
    assert kept_steps(RetentionPolicy(max_to_keep=1, keep_best=BestK(2, "min")), found) == [3, 4]


def test_best_k_of_equal_scores_is_the_newer():
    found = scored((1, 0.5), (2, 0.5), (3, 0.9))
    assert [c.step for c in BestK(1, "min").best(found)] == [2]


def test_best_k_survive_the_hourly_rule():
    # Hourly keeps 1 of the older ones (they are all within 40 minutes); best keeps step 3 too.
    found = [CheckpointInfo(s, s * 600.0, 0, score) for s, score in [(1, 0.9), (2, 0.8), (3, 0.1), (4, 0.7), (5, 0.6)]]
    policy = RetentionPolicy(max_to_keep=1, keep_checkpoint_every_n_hours=1, keep_best=BestK(1, "min"))
    assert kept_steps(policy, found) == [1, 3, 5]


def test_total_bytes_cap_keeps_the_best_and_the_newest():
    found = scored((1, 0.1), (2, 0.9), (3, 0.8), (4, 0.7))
    policy = RetentionPolicy(max_total_bytes=100, keep_best=BestK(1, "min"))
    # Best (40) + newest (40) leave room for none of the others.
    assert kept_steps(policy, found) == [1, 4]


def test_total_bytes_cap_may_be_exceeded_by_the_best_and_the_newest():
    found = scored((1, 0.1), (2, 0.2), (3, 0.9))
    policy = RetentionPolicy(max_total_bytes=10, keep_best=BestK(2, "min"))
    assert kept_steps(policy, found) == [1, 2, 3]


def test_best_k_retention_is_stable_when_rerun_on_the_survivors():
    policy = RetentionPolicy(max_to_keep=2, keep_best=BestK(2, "max"))
    on_disk: list[CheckpointInfo] = []
    for step, score in enumerate([0.3, 0.9, 0.1, 0.8, 0.2, 0.4, 0.5], start=1):
        on_disk.append(CheckpointInfo(step, float(step), 0, score))
        doomed = {c.step for c in policy.to_delete(on_disk)}
        on_disk = [c for c in on_disk if c.step not in doomed]
    assert [c.step for c in on_disk] == [2, 4, 6, 7]
    assert policy.to_delete(on_disk) == []


def test_a_checkpoint_that_leaves_the_best_k_goes_by_recency():
    found = scored((1, 0.5), (2, 0.4), (3, 0.3), (4, 0.2))
    assert kept_steps(RetentionPolicy(max_to_keep=1, keep_best=BestK(1, "min")), found) == [4]
