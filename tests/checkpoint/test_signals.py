"""`SignalCatcher`: record a stop signal, put the old handlers back at once, hand the signal on.

Real signals sent to this process (SIGUSR1 / SIGUSR2, with recording Python
handlers installed first); every handler is put back after each test.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import pytest

from tfcheckpointer.checkpoint.signals import SignalCatcher

SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


@pytest.fixture
def received():
    """Recording Python handlers on SIGUSR1 and SIGUSR2; the original handlers come back afterwards."""
    original = {s: signal.getsignal(s) for s in SIGNALS}
    calls: list[int] = []

    def recorder(signum, frame):
        calls.append(signum)

    for signum in SIGNALS:
        signal.signal(signum, recorder)
    yield calls
    for signum, handler in original.items():
        signal.signal(signum, handler)


def handlers() -> dict[int, object]:
    return {s: signal.getsignal(s) for s in SIGNALS}


def test_install_replaces_the_handlers(received):
    before = handlers()
    catcher = SignalCatcher(["SIGUSR1", "SIGUSR2"])
    catcher.install()
    try:
        after = handlers()
        assert all(after[s] is not before[s] and callable(after[s]) for s in SIGNALS)
    finally:
        catcher.uninstall()


def test_install_outside_the_main_thread_changes_nothing(received):
    before = handlers()
    catcher = SignalCatcher(["SIGUSR1"])
    errors: list[BaseException] = []

    def install():
        try:
            catcher.install()
        except BaseException as error:  # reported below
            errors.append(error)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join()
    assert errors == []
    assert handlers() == before
    os.kill(os.getpid(), signal.SIGUSR1)
    assert catcher.received is None
    assert received == [signal.SIGUSR1]


def test_a_received_signal_is_recorded_and_the_old_handlers_come_back_at_once(received, caplog):
    before = handlers()
    catcher = SignalCatcher(["SIGUSR1", "SIGUSR2"])
    catcher.install()
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        os.kill(os.getpid(), signal.SIGUSR2)
    assert catcher.received is signal.SIGUSR2
    assert received == []  # recorded, not handed on
    assert handlers() == before
    assert [r.getMessage() for r in caplog.records if r.name == "tfcheckpointer"] == [
        "Received SIGUSR2: saving a checkpoint at the end of this step (send it again to stop now)."
    ]


def test_a_second_signal_goes_to_the_old_handler(received):
    catcher = SignalCatcher(["SIGUSR1"])
    catcher.install()
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert catcher.received is signal.SIGUSR1
    assert received == [signal.SIGUSR1]


def test_resume_signal_delivers_it_to_the_previous_handler(received):
    catcher = SignalCatcher(["SIGUSR1"])
    catcher.install()
    os.kill(os.getpid(), signal.SIGUSR1)
    catcher.resume_signal()
    assert received == [signal.SIGUSR1]
    assert catcher.received is None


def test_resume_signal_with_nothing_received_delivers_nothing_and_uninstalls(received):
    before = handlers()
    catcher = SignalCatcher(["SIGUSR1"])
    catcher.install()
    catcher.resume_signal()
    assert received == []
    assert handlers() == before


def test_uninstall_restores_the_handlers(received):
    before = handlers()
    catcher = SignalCatcher(["SIGUSR1", "SIGUSR2"])
    catcher.install()
    catcher.uninstall()
    assert handlers() == before
    os.kill(os.getpid(), signal.SIGUSR1)
    assert catcher.received is None
    assert received == [signal.SIGUSR1]


def test_installing_twice_then_uninstalling_restores_the_original_handlers(received):
    before = handlers()
    catcher = SignalCatcher(["SIGUSR1"])
    catcher.install()
    catcher.install()
    catcher.uninstall()
    assert handlers() == before


def test_a_catcher_can_be_installed_again_after_a_signal(received):
    catcher = SignalCatcher(["SIGUSR1"])
    catcher.install()
    os.kill(os.getpid(), signal.SIGUSR1)
    catcher.received = None
    catcher.install()
    os.kill(os.getpid(), signal.SIGUSR1)
    assert catcher.received is signal.SIGUSR1
    assert received == []


def test_no_signals_installs_nothing(received):
    before = handlers()
    catcher = SignalCatcher([])
    catcher.install()
    assert handlers() == before
    catcher.uninstall()


def test_an_unknown_signal_name_is_refused():
    with pytest.raises(KeyError, match="SIGNOPE"):
        SignalCatcher(["SIGNOPE"])
