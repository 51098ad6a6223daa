"""What a save costs the person training: fit time with the saver minus the same fit without.

Each competitor trains the same model on the same data, saving after every
`every` batches; one fit per fresh process (all in one process with
`quick`), competitors interleaved A B C A B C over the repeats. Reported per
competitor: bytes on disk per save, the median fit time, the end-to-end
overhead per save (median fit minus the median fit without saving, divided
by the saves) and its ratio to Keras `ModelCheckpoint(save_weights_only=True)`,
the CPU time per save (the process's CPU seconds, all threads, with minus
without: what a background write must still find cores for, and steadier
than wall time on a shared machine), and the median hook stall (time inside
the callback's `on_train_batch_end` on a save step): what a hook-only
benchmark would report.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any

import common

COMPETITORS = {
    "none": "no checkpointing (the baseline)",
    "keras_weights_h5": "Keras ModelCheckpoint(save_weights_only=True), .weights.h5",
    "keras_keras": "Keras ModelCheckpoint, .keras",
    "backup_and_restore": "Keras BackupAndRestore",
    "tf_manager_sync": "tf.train.CheckpointManager",
    "tf_manager_async": "tf.train.CheckpointManager, async checkpoint option",
    "tf1_saver": "bare tf.compat.v1.train.Saver",
    "ours_sync": "tfcheckpointer sync, full state",
    "ours_sync_no_spare": "tfcheckpointer sync, full state, spare_data_file: false",
    "ours_async": "tfcheckpointer async, full state",
    "ours_weights_only": "tfcheckpointer sync, weights only",
}
BASELINE = "keras_weights_h5"


def run(quick: bool, repeats: int) -> list[dict[str, Any]]:
    spec = _spec(quick)
    order = list(common.interleaved(list(COMPETITORS), repeats))
    jobs = [{"kind": "fit", "competitor": name, "model": spec} for _, name in order]
    results = common.run_jobs("save", jobs, fresh=not quick)
    return _rows(results, spec)


STEADY_FROM = 2
"""Saves before this index are a fit's first: no checkpoint was deleted yet, so no save
of any saver reuses memory freed by an earlier one (see the README, Performance)."""


def _spec(quick: bool) -> dict[str, Any]:
    # 400 steps: 8 saves a fit, so that most are past the first two.
    return dict(common.QUICK_MODEL) if quick else dict(common.FULL_MODEL, steps=400)


def _rows(results: list[dict[str, Any]], spec: dict[str, Any]) -> list[dict[str, Any]]:
    saves = spec["steps"] // spec["every"]
    fits = {name: common.median(r["fit_s"] for r in results if r["competitor"] == name) for name in COMPETITORS}
    overhead = {name: (fits[name] - fits["none"]) / saves for name in COMPETITORS}
    windows = {
        name: common.median(w for r in results if r["competitor"] == name for w in r["window_s"])
        for name in COMPETITORS
    }
    steady = {
        name: common.median(
            w for r in results if r["competitor"] == name for w in r["window_s"][STEADY_FROM:]
        )
        for name in COMPETITORS
    }
    cpus = {name: common.median(r["cpu_s"] for r in results if r["competitor"] == name) for name in COMPETITORS}
    rows = []
    for name, label in COMPETITORS.items():
        mine = [r for r in results if r["competitor"] == name]
        row: dict[str, Any] = {
            "saver": label,
            "MB per save": common.median(r["bytes"] for r in mine) / 1e6,
            "fit s (median)": fits[name],
            "per save s (fit - baseline fit)": overhead[name] if name != "none" else None,
            "per save s (steps around saves)": windows[name],
            "same, 3rd save on": steady[name],
            "vs Keras .weights.h5, 3rd save on": (
                _ratio(steady[name], steady[BASELINE]) if name != "none" else None
            ),
            "vs our sync, 3rd save on": (
                _ratio(steady[name], steady["ours_sync"]) if name == "ours_async" else None
            ),
            "CPU s per save": (cpus[name] - cpus["none"]) / saves if name != "none" else None,
            "hook stall ms (median)": _ms(common.median(s for r in mine for s in r["save_stalls_s"])),
            "train end ms": _ms(common.median(r["end_s"] for r in mine)),
            "runs": len(mine),
        }
        rows.append(row)
    return rows


def _ratio(part: float, whole: float) -> float | None:
    """`part / whole`, or None where the baseline cost nothing measurable (noise, quick runs)."""
    return part / whole if part is not None and whole is not None and whole > 0 else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


# --- Child side ----------------------------------------------------------------------------


def _fit(job: dict[str, Any]) -> dict[str, Any]:
    import models

    spec = job["model"]
    model = models.dense_stack(spec)
    x, y = models.data(spec)
    models.warm_up(model, x, y, spec["batch"])
    directory = tempfile.mkdtemp(prefix=f"bench-{job['competitor']}-")
    try:
        timed = models.TimedCallback(_callback(job["competitor"], directory, spec["every"]))
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(x, y, batch_size=spec["batch"], epochs=1, verbose=0, shuffle=False, callbacks=[timed])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        return {
            "competitor": job["competitor"],
            "fit_s": seconds,
            "cpu_s": cpu,
            "window_s": _window_seconds(timed.batch_ends, spec["every"]),
            "save_stalls_s": [
                s for b, s in enumerate(timed.batch_seconds) if (b + 1) % spec["every"] == 0
            ] if job["competitor"] != "none" else [],
            "end_s": timed.end_seconds,
            # What one save leaves on disk: every saver keeps only its newest.
            "bytes": common.disk_bytes(directory),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _window_seconds(batch_ends: list[float], every: int) -> list[float]:
    """The extra wall time of the steps from each save on, one figure per save.

    A save's window is its own step and the next `every // 2` - 1 (where an
    async write, its copy-on-write and its contention land); its cost is the
    window's time less as many typical steps: the median step of the stretches
    just before and just after the window, outside every window. A typical
    step taken nearby, not over the whole fit, keeps a fit whose speed shifts
    midway (this VM's fits run at one of two speeds, and can switch) from
    charging the shift to the saves; a spike from another process spoils one
    window, not the whole fit. The last save, whose window the end of
    training cuts short, is left out (train end is timed apart).
    """
    steps = [b - a for a, b in zip(batch_ends, batch_ends[1:])]  # steps[i] ends batch i + 1
    width = max(1, every // 2)
    # Batch `every - 1` saves first; its step is steps[every - 2].
    starts = [s for s in range(every - 2, len(steps), every) if s + width <= len(steps)]
    inside = {i for s in starts for i in range(s, s + width)}
    costs = []
    for s in starts:
        nearby = range(max(0, s - every + width), min(len(steps), s + every))
        typical = common.median(steps[i] for i in nearby if i not in inside)
        costs.append(sum(steps[i] - typical for i in range(s, s + width)))
    return costs


def _callback(name: str, directory: str, every: int) -> Any:
    import keras

    import tf_savers
    from tfcheckpointer import CheckpointCallback

    ours = dict(
        directory=f"{directory}/ckpt", every_n_steps=every, max_to_keep=1,
        # Only the variables, as every other competitor writes: no .meta, no graph file.
        save_meta_graph=False, save_graph_def=None,
    )
    makers = {
        "none": keras.callbacks.Callback,
        "keras_weights_h5": lambda: keras.callbacks.ModelCheckpoint(
            f"{directory}/ckpt.weights.h5", save_weights_only=True, save_freq=every
        ),
        "keras_keras": lambda: keras.callbacks.ModelCheckpoint(f"{directory}/ckpt.keras", save_freq=every),
        "backup_and_restore": lambda: keras.callbacks.BackupAndRestore(
            directory, save_freq=every, delete_checkpoint=False
        ),
        "tf_manager_sync": lambda: tf_savers.TrainCheckpointManager(directory, every, asynchronous=False),
        "tf_manager_async": lambda: tf_savers.TrainCheckpointManager(directory, every, asynchronous=True),
        "tf1_saver": lambda: tf_savers.BareSaver(directory, every),
        "ours_sync": lambda: CheckpointCallback(**ours),
        "ours_sync_no_spare": lambda: CheckpointCallback(**ours, spare_data_file=False),
        "ours_async": lambda: CheckpointCallback(**ours, async_save=True),
        "ours_weights_only": lambda: CheckpointCallback(**ours, include_optimizer=False),
    }
    return makers[name]()


HANDLERS = {"fit": _fit}

if __name__ == "__main__":
    common.child_main(HANDLERS)
