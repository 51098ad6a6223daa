"""Shared test helpers: the tiniest models that show each behaviour, and small runners."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np


def steps_on_disk(directory, basename: str = "model.ckpt") -> list[int]:
    """The steps of the complete `<basename>-<step>` checkpoints in `directory`, in order."""
    pattern = re.compile(re.escape(basename) + r"-(\d+)\.index")
    return sorted(int(m.group(1)) for name in os.listdir(directory) if (m := pattern.fullmatch(name)))


def fit(model, callback, data=None, *, epochs: int = 1, batch_size: int = 8) -> None:
    """`model.fit` on `data` (default: `rows()`) with `callback` (or a list), quietly, in a fixed order."""
    x, y = rows() if data is None else data
    callbacks = callback if isinstance(callback, list) else [callback]
    model.fit(x, y, epochs=epochs, batch_size=batch_size, callbacks=callbacks, verbose=0, shuffle=False)


def rows(count: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` rows of 4 features and a scalar target."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, 4)).astype("float32")
    return x, (x.sum(axis=1, keepdims=True) > 0).astype("float32")


def mlp(*, steps_per_execution: int = 1, seed: int = 1):
    """A compiled 4 -> 8 -> 1 MLP with batch norm and dropout."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((4,), name="features"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", "mse", steps_per_execution=steps_per_execution)
    return model


def convnet():
    """A compiled 6x6x2 -> 3-class convnet with batch norm and dropout."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def two_in_two_out():
    """A compiled functional model: inputs `image` (5) and `meta` (2), dict outputs `score`, `label`."""
    import keras

    keras.utils.set_random_seed(4)
    image = keras.Input((5,), name="image")
    meta = keras.Input((2,), name="meta")
    hidden = keras.layers.Dense(6, activation="tanh")(keras.layers.Concatenate()([image, meta]))
    outputs = {
        "score": keras.layers.Dense(1, name="score")(hidden),
        "label": keras.layers.Dense(3, activation="softmax", name="label")(hidden),
    }
    model = keras.Model({"image": image, "meta": meta}, outputs)
    model.compile("adam", {"score": "mse", "label": "sparse_categorical_crossentropy"})
    return model


def run_in_tf1_session(path, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
    """Load a frozen graph as a TF1 consumer does and run it."""
    import tensorflow as tf

    from tfcheckpointer.graph.files import read_graph_def

    graph_def = read_graph_def(str(path))
    with tf.Graph().as_default() as graph:
        placeholders = {
            name: tf.compat.v1.placeholder(tf.as_dtype(value.dtype), [None, *value.shape[1:]])
            for name, value in feeds.items()
        }
        results = tf.compat.v1.import_graph_def(
            graph_def,
            input_map={f"{name}:0": p for name, p in placeholders.items()},
            return_elements=[f"{name}:0" for name in outputs],
            name="frozen",
        )
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(results, {placeholders[n]: v for n, v in feeds.items()})


def recurrent():
    """A compiled LSTM over sequences of any length."""
    import keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [keras.Input((None, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)]
    )
    model.compile("adam", "mse")
    return model


def write_frozen_graph(directory: Path, name: str = "frozen.pb") -> Path:
    """The tiny MLP frozen to `directory/name` (with its .json sidecar)."""
    from tfcheckpointer.config import FreezeConfig
    from tfcheckpointer.graph.keras_freeze import freeze_model

    config = FreezeConfig(
        output=str(directory / name), input_names=("inputs/X",), output_names=("output/y",)
    )
    freeze_model(mlp(), config)
    return directory / name


def write_graph_mode_files(directory: Path) -> None:
    """A TF1 graph `y = x @ w` with a Saver, written as a TF1 program would write it.

    `model.meta` (collections `inputs` / `outputs`), `plain.meta` (without
    them), `graph.pb` (its GraphDef, variables and all) and the checkpoint
    `model.ckpt-7`, which has no `global_step`.
    """
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.compat.v1.get_variable("w", [3, 2])
        y = tf.identity(tf.matmul(x, w), name="y")
        tf.compat.v1.add_to_collection("inputs", x)
        tf.compat.v1.add_to_collection("outputs", y)
        saver = tf.compat.v1.train.Saver(save_relative_paths=True)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(
                session, str(directory / "model.ckpt"), global_step=7, write_meta_graph=False
            )
        saver.export_meta_graph(str(directory / "model.meta"))
        saver.export_meta_graph(str(directory / "plain.meta"), collection_list=["variables"])
        tf.io.write_graph(graph.as_graph_def(), str(directory), "graph.pb", as_text=False)
