"""A separate process that trains or refuses to resume the models of `derived_models`.

    python -m tests.helpers.derived_child train ROOT
    python -m tests.helpers.derived_child refuse DIRECTORY[=RESTORE] ...

`train` trains each kind (adapted) in `ROOT/<kind>/run`, two steps per epoch
and a checkpoint every two steps: after epoch 1 it copies the directory to
`ROOT/<kind>/at2` and writes the model's outputs on `probe()` to
`out2.npy`; after epoch 2, `out4.npy`. `refuse` resumes a model of another
architecture into each directory (from RESTORE, if given) and prints the
error each refusal raised.
"""

from __future__ import annotations

import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf

from tests.helpers.derived_models import KINDS, build, data, probe
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.errors import RestoreMismatchError


def train(root: str) -> None:
    tf.config.experimental.enable_op_determinism()
    x, y = data()
    for kind in KINDS:
        directory = os.path.join(root, kind)
        model = build(kind, adapt=True)
        callback = CheckpointCallback(
            directory=os.path.join(directory, "run"), every_n_steps=2, max_to_keep=None
        )
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
        shutil.copytree(os.path.join(directory, "run"), os.path.join(directory, "at2"))
        np.save(os.path.join(directory, "out2.npy"), model(probe(), training=False).numpy())
        model.fit(x, y, batch_size=8, epochs=2, initial_epoch=1, shuffle=False, verbose=0,
                  callbacks=[callback])
        np.save(os.path.join(directory, "out4.npy"), model(probe(), training=False).numpy())


def refuse(targets: list[str]) -> None:
    x, y = data()
    for target in targets:
        directory, _, restore = target.partition("=")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
        model.compile("adam", "mse")
        callback = CheckpointCallback(directory=directory, every_n_steps=2, restore=restore or "latest")
        try:
            model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[callback])
        except RestoreMismatchError as error:
            print(f"refused: {str(error).splitlines()[0]}", flush=True)
        else:
            print("resumed", flush=True)


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {"train": lambda: train(arguments[0]), "refuse": lambda: refuse(arguments)}[command]()
