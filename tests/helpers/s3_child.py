"""A training process for the object-storage tests, which kill it or resume after it.

    python -m tests.helpers.s3_child DIRECTORY WEIGHTS [--every N] [--epochs N]
        [--stall-index-at STEP]

Trains `tests.helpers.mlp` on `rows()` with checkpoints every N steps at
DIRECTORY (an `s3://` URL; boto finds the server through the `AWS_*`
environment the parent passes on) and saves the model's final weights to
WEIGHTS (`.npz`). With `--stall-index-at STEP` the upload of that step's
`.index` (the last file of its checkpoint) prints `stalled` and hangs, so
that the parent can kill the process mid-upload.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from tests.helpers import fit, mlp
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.checkpoint import storage


def stall_index_upload(step: int) -> None:
    upload = storage.FsspecFiles.upload

    def stalling(self, local: str, path: str) -> None:
        if path.endswith(f"-{step}.index"):
            print("stalled", flush=True)
            time.sleep(600)
        upload(self, local, path)

    storage.FsspecFiles.upload = stalling


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("weights")
    parser.add_argument("--every", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--stall-index-at", type=int)
    args = parser.parse_args()
    if args.stall_index_at is not None:
        stall_index_upload(args.stall_index_at)
    model = mlp()
    fit(model, CheckpointCallback(args.directory, every_n_steps=args.every), epochs=args.epochs)
    np.savez(args.weights, *model.get_weights())


if __name__ == "__main__":
    main()
