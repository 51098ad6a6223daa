"""Save on SIGTERM / SIGINT, then stop as the signal asked.

The handler only records the signal: the save happens at the next point the
training loop offers (the end of the current step), where the variables are
consistent. After the save the previous handlers are put back and the signal
is raised again, so the process ends exactly as it would have without us
(killed by SIGTERM, `KeyboardInterrupt` on SIGINT, or the user's own handler).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger("tfcheckpointer")


class SignalCatcher:
    """Records the first of `signals` that arrives while installed."""

    def __init__(self, signals: Sequence[str]):
        self.signals = [signal.Signals[name] for name in signals]
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        # Python runs signal handlers only in the main thread, and only it may set them.
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._record)

    def _record(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum)
        # Put the old handlers back at once: if no training step comes to take the
        # signal (training died with an exception, say), a second one acts as usual.
        self.uninstall()
        logger.warning(
            "Received %s: saving a checkpoint at the end of this step (send it again to stop now).",
            self.received.name,
        )

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def resume_signal(self) -> None:
        """Put the previous handlers back and deliver the recorded signal to them."""
        received, self.received = self.received, None
        self.uninstall()
        if received is not None:
            signal.raise_signal(received)
