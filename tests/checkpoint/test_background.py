"""`BackgroundWriter`: one write at a time off the calling thread, its error kept for `wait()`."""

from __future__ import annotations

import logging
import threading

import pytest

from tfcheckpointer.checkpoint.background import BackgroundWriter
from tfcheckpointer.errors import CheckpointError


@pytest.fixture
def writer():
    """A writer whose write in flight, if any, is waited for at the end of the test."""
    made = BackgroundWriter()
    yield made
    made.wait()


def test_the_write_runs_off_the_calling_thread(writer):
    ran_on: list[int] = []
    writer.submit(lambda: ran_on.append(threading.get_ident()))
    assert writer.wait() is None
    assert len(ran_on) == 1 and ran_on[0] != threading.get_ident()


def test_the_writer_thread_is_named_and_not_a_daemon(writer):
    seen: list[threading.Thread] = []
    writer.submit(lambda: seen.append(threading.current_thread()))
    writer.wait()
    [thread] = seen
    assert thread.name == "tfcheckpointer-writer"
    assert not thread.daemon  # the interpreter waits for a write in flight before it exits


def test_wait_returns_none_on_success(writer):
    writer.submit(lambda: 42)
    assert writer.wait() is None


def test_wait_with_nothing_submitted_returns_none(writer):
    assert writer.wait() is None
    assert not writer.busy


def test_wait_returns_the_error_of_a_failed_write_and_logs_it(writer, caplog):
    error = CheckpointError("Cannot write checkpoint /x/model.ckpt-3: disk full")

    def fail():
        raise error

    with caplog.at_level(logging.ERROR, logger="tfcheckpointer"):
        writer.submit(fail)
        assert writer.wait() is error
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "tfcheckpointer"] == [
        (logging.ERROR, "Background checkpoint write failed: Cannot write checkpoint /x/model.ckpt-3: disk full")
    ]


def test_an_error_is_handed_out_once(writer):
    def fail():
        raise ValueError("boom")

    writer.submit(fail)
    assert isinstance(writer.wait(), ValueError)
    assert writer.wait() is None


def test_a_failure_does_not_stop_the_next_write(writer):
    def fail():
        raise ValueError("boom")

    done: list[int] = []
    writer.submit(fail)
    writer.wait()
    writer.submit(lambda: done.append(1))
    assert writer.wait() is None
    assert done == [1]


def test_submitting_twice_without_wait_raises(writer):
    release = threading.Event()
    writer.submit(release.wait)
    try:
        with pytest.raises(RuntimeError, match=r"^BackgroundWriter\.submit called before wait\(\)\.$"):
            writer.submit(lambda: None)
    finally:
        release.set()
    assert writer.wait() is None


def test_submitting_after_a_finished_write_still_needs_wait(writer):
    finished = threading.Event()
    writer.submit(finished.set)
    assert finished.wait(10)
    with pytest.raises(RuntimeError, match=r"^BackgroundWriter\.submit called before wait\(\)\.$"):
        writer.submit(lambda: None)


def test_busy_while_a_write_blocks(writer):
    started, release = threading.Event(), threading.Event()

    def blocked():
        started.set()
        release.wait()

    assert not writer.busy
    writer.submit(blocked)
    assert started.wait(10)
    assert writer.busy
    release.set()
    assert writer.wait() is None
    assert not writer.busy


def test_wait_blocks_until_the_write_ends(writer):
    release = threading.Event()
    finished: list[bool] = []

    def slow():
        release.wait()
        finished.append(True)

    writer.submit(slow)
    threading.Timer(0.05, release.set).start()
    writer.wait()
    assert finished == [True]
