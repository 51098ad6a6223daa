"""A progress bar for writing a large frozen graph: Keras's `Progbar`, in MB."""

from __future__ import annotations

import sys

from keras.utils import Progbar

from tfcheckpointer.graph.stream import Progress

_MB = 1 << 20

MIN_BYTES = 64 * _MB
"""Smaller graphs are written in well under a second: no bar for them."""


def progress_bar(total_bytes: int) -> Progress:
    """A `stream.Progress` (a `stream.ProgressFactory`) that draws a bar to `total_bytes`, in MB.

    Nothing is drawn for a graph under `MIN_BYTES`. The graph modules take
    this as an argument, so that the TF1 routes import no Keras unless a
    caller asks for a bar.
    """
    if total_bytes < MIN_BYTES:
        return lambda written: None
    print(f"Freezing: {total_bytes / _MB:,.1f} MB")
    # Piped to a file, each redraw is a new line: one every 10 s there, not every 0.05 s.
    interval = 0.05 if _interactive() else 10.0
    bar = Progbar(max(1, -(-total_bytes // _MB)), unit_name="MB", interval=interval)
    shown = 0

    def update(written: int) -> None:
        nonlocal shown
        done = -(-written // _MB)
        if done > shown or written == total_bytes:
            shown = done
            bar.update(done, finalize=written >= total_bytes)

    return update


def _interactive() -> bool:
    # As Keras's Progbar decides it: a terminal, or a notebook (whose stdout is no tty).
    return (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()) or "ipykernel" in sys.modules
