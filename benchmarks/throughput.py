"""Write speed of one full-state save against a plain sequential write of the same bytes.

In one process (the model of the `save` section, its variables and Adam
state): a plain `open().write()` of the snapshot's bytes, the bare `SaveV2`
op a Saver runs, our bundle writer alone (`save_bundle`: the same bytes as
SaveV2), and a whole tfcheckpointer save (`CheckpointSaver.save`: the bundle
to a temporary prefix, the check, the renames, the state file, retention),
interleaved, into the same directory, which is emptied after
each write so that every writer meets the same page cache.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

import common

WRITERS = {
    "plain": "plain sequential write (open + write)",
    "save_v2": "bare SaveV2 op (what a Saver runs)",
    "save_bundle": "tfcheckpointer save_bundle alone (the same bytes as SaveV2)",
    "ours": "tfcheckpointer CheckpointSaver.save (temp + check + rename + state file)",
}


def run(quick: bool, repeats: int) -> list[dict[str, Any]]:
    spec = dict(common.QUICK_MODEL if quick else common.FULL_MODEL)
    job = {"kind": "throughput", "model": spec, "repeats": 3 * repeats}
    (result,) = common.run_jobs("throughput", [job], fresh=not quick)
    rows = []
    plain = common.median(result["plain"])
    for name, label in WRITERS.items():
        seconds = common.median(result[name])
        rows.append({
            "writer": label,
            "MB": result["bytes"] / 1e6,
            "median s": seconds,
            "GB/s": result["bytes"] / seconds / 1e9,
            "time vs plain": seconds / plain,
            "runs": len(result[name]),
        })
    return rows


def _throughput(job: dict[str, Any]) -> dict[str, Any]:
    import models
    import numpy as np
    import tensorflow as tf

    from tfcheckpointer.checkpoint.bundle import save_bundle
    from tfcheckpointer.checkpoint.directory import CheckpointDirectory
    from tfcheckpointer.checkpoint.keys import checkpoint_variables
    from tfcheckpointer.checkpoint.policy import RetentionPolicy
    from tfcheckpointer.checkpoint.saver import CheckpointSaver
    from tfcheckpointer.checkpoint.variables import EagerVariables

    model = models.dense_stack(job["model"])
    model.optimizer.build(model.trainable_variables)
    snapshot = EagerVariables(checkpoint_variables(model, include_optimizer=True)).snapshot()
    arrays = [np.asarray(t) for t in snapshot.tensors]
    directory = tempfile.mkdtemp(prefix="bench-throughput-")
    saver = CheckpointSaver(CheckpointDirectory(directory, "model.ckpt"), RetentionPolicy(max_to_keep=1))

    def plain(step: int) -> None:
        with open(f"{directory}/plain-{step}", "wb") as f:
            for array in arrays:
                f.write(array.data)

    writers = {
        "plain": plain,
        "save_v2": lambda step: tf.raw_ops.SaveV2(
            prefix=f"{directory}/savev2-{step}", tensor_names=snapshot.keys,
            shape_and_slices=snapshot.shape_and_slices, tensors=snapshot.tensors,
        ),
        "save_bundle": lambda step: save_bundle(f"{directory}/bundle-{step}", snapshot),
        "ours": lambda step: saver.save(step, snapshot),
    }
    seconds: dict[str, list[float]] = {name: [] for name in writers}
    try:
        for step, name in common.interleaved(list(writers), job["repeats"]):
            start = time.perf_counter()
            writers[name](step + 1)
            seconds[name].append(time.perf_counter() - start)
            for entry in os.listdir(directory):
                os.remove(f"{directory}/{entry}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"bytes": snapshot.nbytes, **seconds}


HANDLERS = {"throughput": _throughput}

if __name__ == "__main__":
    common.child_main(HANDLERS)
