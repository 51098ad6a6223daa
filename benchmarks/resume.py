"""Resume time: restoring a checkpoint into a freshly built model, against Keras `load_weights`.

One process writes the checkpoints (the `save` section's model after its
warm-up steps); then each restore runs in a fresh process (all in one with
`quick`), interleaved, and times only the restore: for tfcheckpointer the
callback's `on_train_begin` (find the newest checkpoint, check it against the
model, build the optimizer, restore), for Keras building the optimizer and
`model.load_weights` (a Keras 3 `.weights.h5` holds the optimizer state too).
The files are in the page cache for every reader alike.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any

import common

READERS = {
    "keras_h5": "Keras model.load_weights(.weights.h5): weights + Adam state, as Keras 3 saves them",
    "ours_weights_only": "tfcheckpointer restore, weights only",
    "ours_full": "tfcheckpointer restore, weights + Adam state (builds the optimizer)",
}


def run(quick: bool, repeats: int) -> list[dict[str, Any]]:
    spec = dict(common.QUICK_MODEL if quick else common.FULL_MODEL)
    directory = tempfile.mkdtemp(prefix="bench-resume-")
    try:
        write = {"kind": "write", "model": spec, "directory": directory}
        (written,) = common.run_jobs("resume", [write], fresh=not quick)
        jobs = [
            {"kind": "restore", "reader": name, "model": spec, "directory": directory}
            for _, name in common.interleaved(list(READERS), repeats)
        ]
        results = common.run_jobs("resume", jobs, fresh=not quick)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    keras_seconds = common.median(r["seconds"] for r in results if r["reader"] == "keras_h5")
    rows = []
    for name, label in READERS.items():
        seconds = common.median(r["seconds"] for r in results if r["reader"] == name)
        rows.append({
            "restore": label,
            "MB read": written[name] / 1e6,
            "median s": seconds,
            "vs Keras load_weights": seconds / keras_seconds,
            "runs": sum(r["reader"] == name for r in results),
        })
    return rows


def _callback(directory: str, *, include_optimizer: bool) -> Any:
    from tfcheckpointer import CheckpointCallback

    return CheckpointCallback(
        directory=directory, every_n_steps=1000, include_optimizer=include_optimizer,
        save_meta_graph=False, save_graph_def=None,
    )


def _write(job: dict[str, Any]) -> dict[str, Any]:
    import models

    spec, directory = job["model"], job["directory"]
    model = models.dense_stack(spec)
    x, y = models.data(spec)
    model.fit(x[: 3 * spec["batch"]], y[: 3 * spec["batch"]], batch_size=spec["batch"], verbose=0)
    model.save_weights(f"{directory}/keras.weights.h5")
    for name, include_optimizer in (("ours_full", True), ("ours_weights_only", False)):
        callback = _callback(f"{directory}/{name}", include_optimizer=include_optimizer)
        callback.set_model(model)
        callback.on_train_begin()
        callback.manager.save(callback.step)
        callback.manager.close()
    return {
        "keras_h5": common.disk_bytes(f"{directory}/keras.weights.h5"),
        "ours_full": common.disk_bytes(f"{directory}/ours_full"),
        "ours_weights_only": common.disk_bytes(f"{directory}/ours_weights_only"),
    }


def _restore(job: dict[str, Any]) -> dict[str, Any]:
    import models

    spec, directory, reader = job["model"], job["directory"], job["reader"]
    model = models.dense_stack(spec)
    if reader == "keras_h5":
        start = time.perf_counter()
        # Keras 3 puts the optimizer's variables in a .weights.h5 and loads them into a built one.
        model.optimizer.build(model.trainable_variables)
        model.load_weights(f"{directory}/keras.weights.h5")
        seconds = time.perf_counter() - start
    else:
        callback = _callback(f"{directory}/{reader}", include_optimizer=reader == "ours_full")
        callback.set_model(model)
        start = time.perf_counter()
        callback.on_train_begin()
        seconds = time.perf_counter() - start
        callback.manager.close()
        if callback.started_from != 3:
            raise RuntimeError(f"{reader} restored step {callback.started_from}, not 3")
    return {"reader": reader, "seconds": seconds}


HANDLERS = {"write": _write, "restore": _restore}

if __name__ == "__main__":
    common.child_main(HANDLERS)
