"""A training process for the crash tests, killed and restarted by them.

    python tests/train_child.py DIRECTORY [--every N] [--epochs N] [--rows N]
        [--batch N] [--sleep SECONDS] [--async] [--on-error raise|warn]
        [--policy mixed_float16|mixed_bfloat16] [--loss-scale-growth N]

Prints `step N` after every optimizer step (before the checkpoint callback
runs), so the parent knows where training is, and at the end `loss scale X`
if the optimizer scales the loss (mixed_float16). The model and data are
fixed by seeds, so the parent can replay training to any step.
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


def build_model(loss_scale_growth: int | None = None) -> keras.Model:
    """The child's model; with `loss_scale_growth`, its Adam scales the loss (mixed_float16).

    The loss scale doubles every `loss_scale_growth` finite steps, so that it
    moves within the few steps a test runs (Keras's default is 2000).
    """
    keras.utils.set_random_seed(7)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(256, activation="relu"), keras.layers.Dense(64),
         keras.layers.Dense(1)]
    )
    optimizer = keras.optimizers.Adam(1e-3)
    if loss_scale_growth is not None:
        optimizer = keras.optimizers.LossScaleOptimizer(
            optimizer, dynamic_growth_steps=loss_scale_growth
        )
    model.compile(optimizer, "mse")
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
    parser.add_argument("--policy", default="float32", help="Keras's global dtype policy")
    parser.add_argument("--loss-scale-growth", type=int, default=None)
    args = parser.parse_args()
    keras.mixed_precision.set_global_policy(args.policy)
    logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
    logging.getLogger("tfcheckpointer").setLevel(logging.INFO)
    tf.config.experimental.enable_op_determinism()
    model = build_model(args.loss_scale_growth)
    callback = CheckpointCallback(
        directory=args.directory, every_n_steps=args.every, max_to_keep=3,
        async_save=args.async_save, on_error=args.on_error,
    )
    x, y = dataset(args.rows)
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, shuffle=False, verbose=0,
              callbacks=[PrintSteps(args.sleep), callback])
    scale = getattr(model.optimizer, "dynamic_scale", None)
    if scale is not None:
        print(f"loss scale {float(scale.numpy())}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
