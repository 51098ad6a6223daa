"""Why the spare data file: writing into memory freed seconds ago, with and without TensorFlow.

    python benchmarks/page_reuse.py [--mb 214] [--gap 3.5] [--saves 6]

Writes `--mb` of bytes as a new file every `--gap` seconds, the way a saver
with `max_to_keep: 1` does, in five orders, and prints the median seconds
per write (the first write of each, into memory never used, left out):

- *new file, then delete the old*: a new checkpoint, then retention
  (tfcheckpointer with `spare_data_file: false`);
- *delete the old, then new file*: what the spare data file achieves, while
  the old checkpoint stays until the new one is published;
- *rewrite one file in place*: truncate and write the same path (h5py's
  `w` mode, so Keras's `.weights.h5`);
- *take the old file over*: rename the old file to the new name and
  overwrite it without truncating (the spare data file, where nothing else
  has it open): no page is freed or allocated;
- *new file, then delete, short gap*: the first order at a 0.3 s gap.

On a VM whose balloon driver reports freed memory to the host (Linux
`page_reporting`, ~2 s after the memory is freed; `/sys/bus/virtio/drivers/
virtio_balloon/*/features` bit 5), the first order must fault every page in
from the host again. Elsewhere the four come out alike. No TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np


def _writes(directory: str, data: np.ndarray, order: str, gap: float, saves: int) -> list[float]:
    seconds = []
    for i in range(saves):
        time.sleep(gap)
        start = time.perf_counter()
        path = f"{directory}/c" if order == "in place" else f"{directory}/c{i}"
        if order == "delete first" and i:
            os.remove(f"{directory}/c{i - 1}")
        if order == "take over" and i:
            os.rename(f"{directory}/c{i - 1}", path)
        with open(path, "r+b" if order == "take over" and i else "wb") as f:
            f.write(data.data)
        if order.startswith("delete after") and i:
            os.remove(f"{directory}/c{i - 1}")
        seconds.append(time.perf_counter() - start)
    return seconds[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=214, help="bytes per write, in MB (default 214)")
    parser.add_argument("--gap", type=float, default=3.5, help="seconds between writes (default 3.5)")
    parser.add_argument("--saves", type=int, default=6, help="writes per order (default 6)")
    args = parser.parse_args(argv)
    data = np.random.default_rng(0).integers(0, 255, args.mb * 10**6, dtype=np.uint8)
    orders = [
        ("new file, then delete the old", "delete after", args.gap),
        ("delete the old, then new file", "delete first", args.gap),
        ("rewrite one file in place", "in place", args.gap),
        ("take the old file over (rename, overwrite)", "take over", args.gap),
        (f"new file, then delete the old, {0.3} s apart", "delete after, short", 0.3),
    ]
    print(f"| order ({args.mb} MB, {args.gap} s apart) | median s per write | GB/s |")
    print("|---|---|---|")
    for label, order, gap in orders:
        directory = tempfile.mkdtemp(prefix="page-reuse-", dir=os.environ.get("TMPDIR"))
        try:
            median = statistics.median(_writes(directory, data, order, gap, args.saves))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        print(f"| {label} | {median:.3f} | {args.mb / 1e3 / median:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
