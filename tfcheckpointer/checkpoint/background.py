"""At most one checkpoint write in flight, in a background thread, errors kept for later."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("tfcheckpointer")


class BackgroundWriter:
    """Runs one write at a time off the training thread.

    The thread is not a daemon, so the interpreter waits for a write in
    flight before it exits. An exception in the write is logged at once and
    kept; `wait()` hands it to the caller, who decides whether it stops
    training — it is never lost.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, write: Callable[[], object]) -> None:
        """Start `write`; the previous one must have been waited for."""
        if self._thread is not None:
            raise RuntimeError("BackgroundWriter.submit called before wait().")

        def run() -> None:
            try:
                write()
            except BaseException as error:  # kept and re-raised by the caller of wait()
                logger.error("Background checkpoint write failed: %s", error)
                self._error = error

        self._thread = threading.Thread(target=run, name="tfcheckpointer-writer")
        self._thread.start()

    def wait(self) -> BaseException | None:
        """Block until the write in flight (if any) ends; return its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        return error
