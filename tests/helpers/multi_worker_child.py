"""One worker of a 2-worker MultiWorkerMirroredStrategy job on 127.0.0.1, for the multi-worker tests.

    python -m tests.helpers.multi_worker_child fit|loop INDEX PORT,PORT DIRECTORY
        [--epochs N] [--sleep SECONDS] [--every-seconds SECONDS] [--restore WHAT] [--per-worker]

`fit` trains a tf_keras model with `model.fit` and `CheckpointCallback`; `loop`
trains a Keras 3 model in a custom loop with `Checkpointer`. Both save every 4
steps (4 steps an epoch), and every `--every-seconds` too if given, and freeze at the end to `DIRECTORY/frozen.pb`. With
`--per-worker`, worker N is configured with `DIRECTORY/worker<N>` instead, so
a test can see that only the chief's directory is written. Prints
`started_from N` after the restore, `step N` after every step, and `done N`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["fit", "loop"])
    parser.add_argument("index", type=int)
    parser.add_argument("ports")
    parser.add_argument("directory")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--every-seconds", type=float, default=None)
    parser.add_argument("--restore", default="latest")
    parser.add_argument("--per-worker", action="store_true")
    args = parser.parse_args()
    workers = [f"127.0.0.1:{port}" for port in args.ports.split(",")]
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": args.index}}
    )
    if args.mode == "fit":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import logging

    import numpy as np
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
    directory = f"{args.directory}/worker{args.index}" if args.per_worker else args.directory
    options = dict(
        directory=directory, every_n_steps=4, every_n_seconds=args.every_seconds,
        restore=args.restore, verbose=1,
        freeze={"output": f"{directory}/frozen.pb", "input_names": ["inputs/X"],
                "output_names": ["output/predict"]},
    )
    x = np.random.default_rng(0).standard_normal((64, 4)).astype("float32")
    y = x[:, :1] * 2.0
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    if args.mode == "fit":
        fit(strategy, options, x, y, args)
    else:
        loop(strategy, options, x, y, args)


def fit(strategy, options, x, y, args) -> None:
    import tf_keras

    from tfcheckpointer import CheckpointCallback

    with strategy.scope():
        tf_keras.utils.set_random_seed(1)
        model = tf_keras.Sequential([
            tf_keras.Input((4,)), tf_keras.layers.Dense(8, activation="relu"),
            tf_keras.layers.BatchNormalization(), tf_keras.layers.Dense(1),
        ])
        model.compile(tf_keras.optimizers.Adam(0.01), "mse")
    callback = CheckpointCallback(**options)

    class Steps(tf_keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            print(f"started_from {callback.started_from}", flush=True)

        def on_train_batch_end(self, batch, logs=None):
            print(f"step {int(model.optimizer.iterations.numpy())}", flush=True)
            time.sleep(args.sleep)

    model.fit(x, y, batch_size=16, epochs=args.epochs, callbacks=[callback, Steps()], verbose=0)
    print(f"done {int(model.optimizer.iterations.numpy())}", flush=True)


def loop(strategy, options, x, y, args) -> None:
    import keras
    import tensorflow as tf

    from tfcheckpointer import Checkpointer

    with strategy.scope():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([
            keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1),
        ])
        optimizer = keras.optimizers.Adam(0.01)
        optimizer.build(model.trainable_variables)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    sharding = tf.data.Options()
    sharding.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = strategy.experimental_distribute_dataset(dataset.with_options(sharding))

    @tf.function
    def train_step(inputs, targets):
        def replica_step(inputs, targets):
            with tf.GradientTape() as tape:
                error = tf.reduce_sum((model(inputs, training=True) - targets) ** 2)
                loss = error / 16.0  # the global batch
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))

        strategy.run(replica_step, args=(inputs, targets))

    with Checkpointer(model, optimizer, **options) as checkpointer:
        print(f"started_from {checkpointer.step}", flush=True)
        end = checkpointer.step + 4 * args.epochs
        while checkpointer.step < end:
            for inputs, targets in batches:
                train_step(inputs, targets)
                print(f"step {checkpointer.step}", flush=True)
                time.sleep(args.sleep)
                checkpointer.after_step()
    print(f"done {checkpointer.step}", flush=True)


if __name__ == "__main__":
    main()
