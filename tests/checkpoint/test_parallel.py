"""Sharing a state's tensors out between two threads."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tfcheckpointer.checkpoint import parallel


def test_every_item_runs_once_and_the_bytes_are_shared_evenly():
    sizes = [40, 10, 30, 20, 5, 5]
    seen: dict[int, str] = {}
    lock = threading.Lock()

    def work(i, stop):
        with lock:
            assert i not in seen
            seen[i] = threading.current_thread().name

    parallel.share_out(sizes, work)
    assert sorted(seen) == list(range(len(sizes)))
    per_thread: dict[str, int] = {}
    for i, name in seen.items():
        per_thread[name] = per_thread.get(name, 0) + sizes[i]
    assert sorted(per_thread.values()) == [55, 55]
    assert threading.current_thread().name in per_thread  # the caller is one of the two


def test_a_failure_stops_the_other_thread_and_is_raised_in_the_caller():
    started = []
    other_waiting = threading.Event()

    def work(i, stop):
        started.append(i)
        if i == 0:  # the largest: the caller's first item
            other_waiting.wait(5)
            raise OSError(28, "No space left on device")
        other_waiting.set()
        assert stop.wait(5)  # set once the caller's item failed

    with pytest.raises(OSError, match="No space left"):
        parallel.share_out([100, 90, 1, 1, 1], work)
    assert sorted(started) == [0, 1]  # neither thread started another item


def test_nothing_to_share():
    parallel.share_out([], lambda i, stop: pytest.fail("called"))


def test_a_wait_interrupted_by_a_signal_still_lets_the_other_thread_finish():
    """A second Ctrl-C during a save: the write must not go on into a closed file."""
    finished = []

    def work(i, stop):
        if i == 1:  # the other thread's: it runs until told to stop, then takes a while
            while not stop.wait(0.01):
                pass
            time.sleep(0.2)
            finished.append(i)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.2)  # while the caller waits for the other thread
    try:
        with pytest.raises(KeyboardInterrupt):
            parallel.share_out([10, 9], work)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert finished == [1]
