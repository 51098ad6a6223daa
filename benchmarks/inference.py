"""Frozen-graph inference in a TF1 session against the Keras model's `tf.function`, batch 1 and 64.

One process: a small CNN (two Conv2D, MaxPooling, Dense; MNIST-sized input)
is frozen with `freeze_model` (verified, not optimized), the `.pb` is
imported into a TF1 `Session`, and blocks of calls alternate between it and
`tf.function(lambda x: model(x, training=False))`, both fed and returning
numpy. Reported: the median time per call of each, and frozen / Keras.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from typing import Any

import common

BATCHES = (1, 64)


def run(quick: bool, repeats: int) -> list[dict[str, Any]]:
    job = {"kind": "inference", "calls": 20 if quick else 200, "blocks": 2 * repeats if quick else 5 * repeats}
    (result,) = common.run_jobs("inference", [job], fresh=not quick)
    rows = []
    for batch in BATCHES:
        keras_s = common.median(result[f"keras-{batch}"])
        frozen_s = common.median(result[f"frozen-{batch}"])
        rows.append({
            "batch": batch,
            "Keras tf.function ms/call": keras_s * 1e3,
            "frozen .pb in a TF1 session ms/call": frozen_s * 1e3,
            "frozen / Keras": frozen_s / keras_s,
            "blocks of calls": len(result[f"frozen-{batch}"]),
        })
    return rows


def _cnn() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile("adam", "mse")
    return model


def _inference(job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from tfcheckpointer import freeze_model
    from tfcheckpointer.config.schema import FreezeConfig

    model = _cnn()
    directory = tempfile.mkdtemp(prefix="bench-inference-")
    try:
        frozen = freeze_model(model, FreezeConfig(output=f"{directory}/model.pb"))
        graph_def = tf.compat.v1.GraphDef()
        with open(frozen.path, "rb") as f:
            graph_def.ParseFromString(f.read())
        with open(frozen.sidecar) as f:
            signature = json.load(f)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)
    input_tensor = signature["inputs"][0]["tensor"]
    output_tensor = signature["outputs"][0]["tensor"]
    keras_call = tf.function(lambda x: model(x, training=False))

    calls = {
        "keras": lambda x: keras_call(x).numpy(),
        "frozen": lambda x: session.run(output_tensor, {input_tensor: x}),
    }
    seconds: dict[str, list[float]] = {}
    for batch in BATCHES:
        x = np.random.default_rng(batch).standard_normal((batch, 28, 28, 1), dtype=np.float32)
        difference = np.max(np.abs(calls["keras"](x) - calls["frozen"](x)))
        if difference > 1e-4:
            raise RuntimeError(f"frozen graph differs from the Keras model by {difference}")
        for _, name in common.interleaved(list(calls), job["blocks"]):
            call = calls[name]
            start = time.perf_counter()
            for _ in range(job["calls"]):
                call(x)
            seconds.setdefault(f"{name}-{batch}", []).append((time.perf_counter() - start) / job["calls"])
    session.close()
    return seconds


HANDLERS = {"inference": _inference}

if __name__ == "__main__":
    common.child_main(HANDLERS)
