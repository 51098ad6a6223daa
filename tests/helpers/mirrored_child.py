"""A Keras 3 `fit` under MirroredStrategy over two logical CPUs, for the resume test.

    python -m tests.helpers.mirrored_child DIRECTORY

Saves every 4 steps (4 steps an epoch, one epoch); prints `started_from N` and `done N`.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

# Before anything else touches TensorFlow's devices.
CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfcheckpointer import CheckpointCallback  # noqa: E402


def main() -> None:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8),
                                  keras.layers.BatchNormalization(), keras.layers.Dense(1)])
        model.compile("adam", "mse")
    x = np.random.default_rng(0).standard_normal((64, 4)).astype("float32")
    callback = CheckpointCallback(directory=sys.argv[1], every_n_steps=4)
    model.fit(x, x[:, :1], batch_size=16, epochs=1, callbacks=[callback], verbose=0)
    print(f"started_from {callback.started_from}")
    print(f"done {int(model.optimizer.iterations.numpy())}")


if __name__ == "__main__":
    main()
