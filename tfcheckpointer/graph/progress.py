"""A progress bar for writing a large frozen graph: Keras's `Progbar`, in MB."""

from __future__ import annotations

from tfcheckpointer.graph.stream import Progress

_MB = 1 << 20


def progress_bar(total_bytes: int, label: str) -> Progress:
    """A `stream.Progress` that draws `label` and a bar to `total_bytes`, in MB.

    Keras is imported here, not by the module: the TF1 routes (`freeze
    --meta`) load it only when a bar is asked for.
    """
    from keras.utils import Progbar

    print(f"{label}: {total_bytes / _MB:,.1f} MB")
    bar = Progbar(max(1, -(-total_bytes // _MB)), unit_name="MB")
    shown = 0

    def update(written: int) -> None:
        nonlocal shown
        done = -(-written // _MB)
        if done > shown or written == total_bytes:
            shown = done
            bar.update(done, finalize=written >= total_bytes)

    return update
