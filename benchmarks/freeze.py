"""What does freezing cost, against TensorFlow's own converter? A benchmark, not a test.

    TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/freeze.py [--quick] [--repeats N] [--sizes 100,500]

A functional stack of Dense(2048) layers (no optimizer state), at ~100 MB,
~500 MB, ~1 GB and ~1.9 GB of weights (`--quick`: ~10 MB), each frozen in a
fresh process, the methods interleaved size by size:

- `stock`: `convert_variables_to_constants_v2` + `tf.io.write_graph` (binary),
  as TensorFlow's docs freeze a Keras model;
- `stream`: `freeze_model` with `verify: false` (freeze + write);
- `stream+verify`: `freeze_model`, verified before it is published;
- `train-end` (largest size, not `--quick`): the same model compiled with
  Adam, one `fit` step, the verified freeze by `CheckpointCallback` at train
  end in the process that holds the model, its Adam state and gradients.

`seconds` is the freeze's wall time; `extra_rss_x` is the child's peak RSS
(`VmHWM`, its high-water mark reset just before) minus its RSS before
the freeze, over the weight bytes. Targets: `stream` <= 0.1x the stock time
and <= 2x the weights of extra memory; `stream+verify` <= 0.25x and <= 3x.
The stock converter needs ~10x the weights: it is skipped (and the row says
so) where the machine's available memory would drop under 4 GB.

`run(quick, repeats)` returns the rows (one dict each) for `benchmarks/run.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYER_UNITS = 2048
LAYER_BYTES = (LAYER_UNITS * LAYER_UNITS + LAYER_UNITS) * 4
SIZES_MB = (100, 500, 1000, 1900)
QUICK_SIZES_MB = (10,)
STOCK_MEMORY_X = 11.0  # the stock converter's measured extra peak (~10x), with a margin
TRAIN_END_MEMORY_X = 6.0  # model + Adam (3x) + gradients (1x) + freeze and verify (~2x)
FLOOR_BYTES = 4 << 30  # leave the machine this much available memory
METHODS = ("stock", "stream", "stream+verify")


def layers_for(megabytes: float) -> int:
    return max(1, round(megabytes * 1e6 / LAYER_BYTES))


def available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    """Reset this process's RSS high-water mark (Linux `clear_refs` 5), so the peak is the freeze's."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _peak_bytes() -> int:
    """This process's RSS high-water mark since `_reset_peak`.

    `VmHWM`, not `ru_maxrss`: that one also holds the parent's RSS at the
    `exec` (a driver that imported TensorFlow would lend the child its size)
    and `clear_refs` does not reset it.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _build(layers: int):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((LAYER_UNITS,), name="x")
    hidden = inputs
    for _ in range(layers):
        hidden = keras.layers.Dense(LAYER_UNITS)(hidden)
    return keras.Model(inputs, hidden)


def _measure(freeze) -> dict:
    import gc

    gc.collect()
    _reset_peak()
    before = _rss_bytes()
    started = time.perf_counter()
    freeze()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "extra_rss_bytes": _peak_bytes() - before, "rss_before": before}


def child(methods: list[str], layers: int, directory: str) -> list[dict]:
    """Measurements in this (fresh) process: build the model, freeze it by each of `methods`."""
    model = _build(layers)
    weights = sum(int(v.numpy().nbytes) for v in model.weights)
    return [_freeze_by(method, model, weights, directory) for method in methods]


def _freeze_by(method: str, model, weights: int, directory: str) -> dict:
    import tensorflow as tf

    from tfcheckpointer.config import FreezeConfig
    from tfcheckpointer.graph.keras_freeze import freeze_model

    output = os.path.join(directory, f"{method.replace('+', '_')}.pb")
    if method == "stock":
        from tensorflow.python.framework import convert_to_constants

        def freeze():
            concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(
                tf.TensorSpec([None, LAYER_UNITS], tf.float32, name="x")
            )
            frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
            tf.io.write_graph(frozen.graph.as_graph_def(), directory, os.path.basename(output), as_text=False)

        result = _measure(freeze)
    elif method in ("stream", "stream+verify"):
        config = FreezeConfig(output=output, verify=method == "stream+verify")
        result = _measure(lambda: freeze_model(model, config))
    else:  # train-end
        result = _train_end(model, directory, output)
    result.update(weights_bytes=weights, file_bytes=os.path.getsize(output))
    return result


def _train_end(model, directory: str, output: str) -> dict:
    """A one-step `fit` with Adam; the callback's train-end freeze measured inside the process."""
    import numpy as np

    from tfcheckpointer import CheckpointCallback

    class Timed(CheckpointCallback):
        def finish_training(self):  # the train-end work, after every other callback's
            import gc

            gc.collect()
            _reset_peak()
            self.rss_before = _rss_bytes()
            started = time.perf_counter()
            super().finish_training()
            self.seconds = time.perf_counter() - started

    callback = Timed(
        directory=os.path.join(directory, "ckpt"), every_n_steps=10**9,
        save_at_train_end=False, save_graph_def=None, save_meta_graph=False,
        freeze={"output": output}, verbose=0,
    )
    model.compile("adam", "mse")
    x = np.zeros((2, LAYER_UNITS), np.float32)
    model.fit(x, x, batch_size=2, epochs=1, verbose=0, callbacks=[callback])
    assert callback.frozen is not None and callback.frozen.max_abs_diff is not None
    return {
        "seconds": callback.seconds, "extra_rss_bytes": _peak_bytes() - callback.rss_before,
        "rss_before": callback.rss_before,
    }


def _spawn(methods: list[str], layers: int) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="freeze-bench-") as directory:
        result = subprocess.run(
            [sys.executable, __file__, "--child", ",".join(methods), str(layers), directory],
            capture_output=True, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
        )
    if result.returncode != 0:
        raise RuntimeError(f"{methods} at {layers} layers failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(quick: bool = False, repeats: int = 1, sizes_mb: tuple[float, ...] | None = None) -> list[dict]:
    """Measure every method at every size, interleaved; one flat row per measurement.

    Each measurement runs in a fresh process, except with `quick`: there one
    process (one TensorFlow import) measures the three methods in turn, so
    that the run stays under ~20 s.
    """
    sizes = sizes_mb or (QUICK_SIZES_MB if quick else SIZES_MB)
    rows: list[dict] = []
    for megabytes in sizes:
        layers = layers_for(megabytes)
        weights = layers * LAYER_BYTES
        methods = list(METHODS)
        if not quick and megabytes == max(sizes):
            methods.append("train-end")
        for repeat in range(repeats):
            measured: dict[str, dict | str] = {}
            for method in methods:
                need = {"stock": STOCK_MEMORY_X, "train-end": TRAIN_END_MEMORY_X}.get(method, 3.5)
                if available_bytes() - need * weights < FLOOR_BYTES:
                    measured[method] = (
                        f"skipped: needs ~{need * weights / 1e9:.0f} GB, "
                        f"{available_bytes() / 1e9:.0f} GB available"
                    )
                elif not quick:
                    measured[method] = _spawn([method], layers)[0]
            if quick:
                runnable = [m for m in methods if m not in measured]
                measured.update(zip(runnable, _spawn(runnable, layers)))
            rows += _rows(measured, weights, repeat)
    return rows


def _rows(measured: dict[str, dict | str], weights: int, repeat: int) -> list[dict]:
    stock = measured.get("stock")
    rows = []
    for method, result in measured.items():
        row: dict = {"section": "freeze", "method": method, "weights_mb": round(weights / 1e6), "repeat": repeat}
        if isinstance(result, str):
            row["note"] = result
        else:
            row.update(
                seconds=round(result["seconds"], 2),
                extra_rss_x=round(result["extra_rss_bytes"] / result["weights_bytes"], 2),
                peak_rss_gb=round((result["rss_before"] + result["extra_rss_bytes"]) / 1e9, 2),
            )
            if isinstance(stock, dict) and method != "stock":
                row["ratio_vs_stock"] = round(result["seconds"] / stock["seconds"], 3)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one ~10 MB model (CI)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--sizes", help="comma-separated MB of weights, e.g. 100,500")
    parser.add_argument("--child", nargs=3, metavar=("METHODS", "LAYERS", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        methods, layers, directory = args.child
        print(json.dumps(child(methods.split(","), int(layers), directory)))
        return
    sizes = tuple(float(s) for s in args.sizes.split(",")) if args.sizes else None
    print(markdown(run(args.quick, args.repeats, sizes)))


if __name__ == "__main__":
    main()
