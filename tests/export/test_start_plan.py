"""`plan_start`: where a run starts, over plain values (no TensorFlow, no files)."""

from __future__ import annotations

import pytest

from tfcheckpointer.export.warm_start import (
    FRESH,
    FROM_PROMOTED,
    RESUME,
    StartPlan,
    VersionSource,
    plan_start,
)

SOURCES = {
    1: VersionSource("/ckpt/model.ckpt-10", "/exports/1/checkpoint/model.ckpt-10", 10),
    2: VersionSource("/ckpt/model.ckpt-20", "/exports/2/checkpoint/model.ckpt-20", 20),
}


def plan(newest, promoted, *, warm_start="promoted", sources=None):
    return plan_start(
        warm_start=warm_start, newest=newest, sources=SOURCES if sources is None else sources,
        promoted=promoted,
    )


def test_after_a_version_that_was_not_promoted_it_starts_from_the_promoted_one():
    assert plan("/ckpt/model.ckpt-20", 1) == StartPlan(
        FROM_PROMOTED, "the newest checkpoint is version 2's, which is not promoted (1 is)",
        version=1, prefix="/exports/1/checkpoint/model.ckpt-10", step=10,
    )


@pytest.mark.parametrize(
    ("newest", "promoted", "reason"),
    [
        ("/ckpt/model.ckpt-20", 2, "the newest checkpoint is promoted version 2's"),
        ("/ckpt/model.ckpt-25", 1, "the newest checkpoint was not exported: the last run did not finish"),
        (None, 1, "no checkpoint to resume from"),
    ],
)
def test_it_resumes_after_the_promoted_version_an_interrupted_run_or_nothing(newest, promoted, reason):
    decided = plan(newest, promoted)
    assert (decided.action, decided.reason) == (RESUME, reason)


def test_warm_start_latest_always_resumes():
    decided = plan("/ckpt/model.ckpt-20", 1, warm_start="latest")
    assert (decided.action, decided.reason) == (RESUME, "export.warm_start is latest")


def test_with_no_promoted_version_it_starts_fresh():
    decided = plan("/ckpt/model.ckpt-20", None)
    assert (decided.action, decided.reason, decided.prefix) == (
        FRESH, "the newest checkpoint is version 2's, which is not promoted, and no version is promoted",
        None,
    )


def test_a_promoted_version_without_a_checkpoint_copy_starts_fresh():
    sources = {**SOURCES, 1: VersionSource("/ckpt/model.ckpt-10", None, 10)}
    decided = plan("/ckpt/model.ckpt-20", 1, sources=sources)
    assert (decided.action, decided.reason) == (
        FRESH, "the newest checkpoint is version 2's, which is not promoted, and promoted version 1 "
        "holds no checkpoint",
    )
