"""How long does checkpointing stall the training loop? A benchmark, not a test.

    TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/checkpoint_stall.py [--mb 200] [--saves 5]

Trains one model with ~`--mb` MB of variables + Adam state (a square Dense
layer) three times in one process, saving every `--every` steps with:

1. Keras 3 `ModelCheckpoint(save_weights_only=True)` (`.weights.h5`), the baseline,
   which writes the weights only (a third of the state with Adam);
2. tfcheckpointer, synchronous, weights + optimizer state (3x the baseline's bytes);
3. tfcheckpointer, synchronous, `include_optimizer: false` (the baseline's bytes);
4. tfcheckpointer, `async: true`, weights + optimizer state.

The stall of a save is the time the training thread spends in the
callback's `on_train_batch_end` on a step that saves. It prints the median
stall of each, the ratios to the baseline (targets: async <= 0.1, sync <= 1.0)
and the raw write throughput of a synchronous tfcheckpointer save against a
plain sequential write of the same number of bytes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from tfcheckpointer import CheckpointCallback
from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.bundle import write_checkpoint
from tfcheckpointer.checkpoint.keys import checkpoint_variables
from tfcheckpointer.checkpoint.variables import EagerVariables


class TimedCallback(keras.callbacks.Callback):
    """Forwards every hook to `inner` and times its `on_train_batch_end`."""

    def __init__(self, inner: keras.callbacks.Callback, every: int):
        super().__init__()
        self.inner = inner
        self.every = every
        self.stalls: list[float] = []
        self.other: list[float] = []

    def set_model(self, model):
        super().set_model(model)
        self.inner.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        self.inner.set_params(params)

    def on_train_begin(self, logs=None):
        self.inner.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self.inner.on_epoch_begin(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self.inner.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        start = time.perf_counter()
        self.inner.on_train_batch_end(batch, logs)
        elapsed = time.perf_counter() - start
        (self.stalls if step % self.every == 0 else self.other).append(elapsed)

    def on_epoch_end(self, epoch, logs=None):
        self.inner.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        start = time.perf_counter()
        self.inner.on_train_end(logs)
        self.end_seconds = time.perf_counter() - start


def build(units: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((units,)), keras.layers.Dense(units)])
    model.compile(keras.optimizers.Adam(1e-4), "mse")
    return model


def run(model, callback, *, every: int, saves: int, x, y) -> TimedCallback:
    timed = TimedCallback(callback, every)
    model.fit(x, y, batch_size=len(x), epochs=every * saves, verbose=0, shuffle=False, callbacks=[timed])
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=200, help="variables + Adam state, in MB")
    parser.add_argument("--every", type=int, default=10, help="save every N steps")
    parser.add_argument("--saves", type=int, default=5)
    args = parser.parse_args()
    # Adam keeps two slots per weight: state = 3 x weights.
    units = int((args.mb * 1e6 / 4 / 3) ** 0.5)
    x = np.random.default_rng(0).standard_normal((16, units)).astype("float32")
    y = np.zeros_like(x)
    model = build(units)
    model.optimizer.build(model.trainable_variables)
    state = sum(v.numpy().nbytes for v in checkpoint_variables(model, include_optimizer=True).values())
    print(f"model: Dense({units}) + Adam, {state / 1e6:.1f} MB of state; save every {args.every} "
          f"steps, {args.saves} saves per run")

    results = {}
    with tempfile.TemporaryDirectory() as root:
        runs = {
            "keras ModelCheckpoint(.weights.h5)": lambda: keras.callbacks.ModelCheckpoint(
                os.path.join(root, "keras", "step.weights.h5"), save_weights_only=True,
                save_freq=args.every,
            ),
            "tfcheckpointer sync": lambda: CheckpointCallback(
                directory=os.path.join(root, "sync"), every_n_steps=args.every, max_to_keep=2,
                save_at_train_end=False,
            ),
            "tfcheckpointer sync, weights only": lambda: CheckpointCallback(
                directory=os.path.join(root, "sync-weights"), every_n_steps=args.every,
                max_to_keep=2, save_at_train_end=False, include_optimizer=False,
            ),
            "tfcheckpointer async": lambda: CheckpointCallback(
                directory=os.path.join(root, "async"), every_n_steps=args.every, max_to_keep=2,
                save_at_train_end=False, async_save=True,
            ),
        }
        os.makedirs(os.path.join(root, "keras"))
        run(build(units), runs["tfcheckpointer sync"](), every=args.every, saves=1, x=x, y=y)  # warm-up
        for name, make in runs.items():
            timed = run(build(units), make(), every=args.every, saves=args.saves, x=x, y=y)
            results[name] = timed
            step_ms = statistics.median(timed.other) * 1e3
            print(f"{name:36s} median stall {statistics.median(timed.stalls) * 1e3:8.1f} ms "
                  f"(max {max(timed.stalls) * 1e3:7.1f}; other steps {step_ms:.2f} ms; "
                  f"train end {timed.end_seconds * 1e3:.0f} ms)")

        baseline = statistics.median(results["keras ModelCheckpoint(.weights.h5)"].stalls)
        for name in ("tfcheckpointer sync", "tfcheckpointer sync, weights only", "tfcheckpointer async"):
            ratio = statistics.median(results[name].stalls) / baseline
            print(f"ratio {name} / keras: {ratio:.3f}")

        raw = os.path.join(root, "raw")
        variables = EagerVariables(checkpoint_variables(model, include_optimizer=True))
        payload = np.random.default_rng(1).bytes(state)
        ours, plain = [], []
        for step in range(1, 4):
            start = time.perf_counter()
            write_checkpoint(naming.checkpoint_prefix(raw, "model.ckpt", step), variables.snapshot())
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            with open(os.path.join(raw, f"plain-{step}"), "wb") as f:
                f.write(payload)
            plain.append(time.perf_counter() - start)
        ours_rate, plain_rate = state / min(ours) / 1e9, state / min(plain) / 1e9
        print(f"write throughput: tfcheckpointer {ours_rate:.2f} GB/s, plain sequential write "
              f"{plain_rate:.2f} GB/s, ratio {ours_rate / plain_rate:.2f}")


if __name__ == "__main__":
    main()
