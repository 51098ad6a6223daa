"""A training process for the crash tests, killed and restarted by them.

    python tests/train_child.py DIRECTORY [--every N] [--epochs N] [--rows N]
        [--batch N] [--sleep SECONDS] [--async] [--on-error raise|warn]

Prints `step N` after every optimizer step (before the checkpoint callback
runs), so the parent knows where training is. The model and data are fixed
by seeds, so the parent can replay training to any step.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from tfcheckpointer import CheckpointCallback


def build_model() -> keras.Model:
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(64),
         keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    return model


def dataset(rows: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).standard_normal((rows, 64)).astype("float32")
    return x, np.tanh(x[:, :1] * 2)


class PrintSteps(keras.callbacks.Callback):
    def __init__(self, sleep: float):
        super().__init__()
        self.sleep = sleep

    def on_train_batch_end(self, batch, logs=None):
        print(f"step {int(self.model.optimizer.iterations.numpy())}", flush=True)
        if self.sleep:
            time.sleep(self.sleep)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--async", dest="async_save", action="store_true")
    parser.add_argument("--on-error", default="raise")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
    logging.getLogger("tfcheckpointer").setLevel(logging.INFO)
    tf.config.experimental.enable_op_determinism()
    model = build_model()
    callback = CheckpointCallback(
        directory=args.directory, every_n_steps=args.every, max_to_keep=3,
        async_save=args.async_save, on_error=args.on_error,
    )
    x, y = dataset(args.rows)
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, shuffle=False, verbose=0,
              callbacks=[PrintSteps(args.sleep), callback])
    print("done", flush=True)


if __name__ == "__main__":
    main()
