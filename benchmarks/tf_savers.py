"""TensorFlow's own savers as Keras callbacks, saving after every `every` batches like the others.

Imported by child processes only.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


class TrainCheckpointManager(keras.callbacks.Callback):
    """`tf.train.CheckpointManager` over the `tf.Variable`s behind the model's and optimizer's.

    With `asynchronous`, saves pass `CheckpointOptions(experimental_enable_async_checkpoint=True)`
    and train end waits for the last write (`Checkpoint.sync`), as a user must. The natural
    `tf.train.Checkpoint(model=model, optimizer=optimizer)` fails under that option in Keras 3.15
    ("tf.function only supports singleton tf.Variables created on the first call", from a Keras
    variable's `_copy_trackable_to_cpu`), so both modes checkpoint the underlying variables.
    """

    def __init__(self, directory: str, every: int, *, asynchronous: bool):
        super().__init__()
        self.directory = directory
        self.every = every
        self.options = tf.train.CheckpointOptions(experimental_enable_async_checkpoint=asynchronous)
        self.asynchronous = asynchronous

    def on_train_begin(self, logs: Any = None) -> None:
        state = tf.Module()
        state.variables_list = [v.value for v in _all_variables(self.model)]
        self.checkpoint = tf.train.Checkpoint(state=state)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=1)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if (batch + 1) % self.every == 0:
            self.manager.save(checkpoint_number=batch + 1, options=self.options)

    def on_train_end(self, logs: Any = None) -> None:
        if self.asynchronous:
            self.checkpoint.sync()


class BareSaver(keras.callbacks.Callback):
    """A `tf.compat.v1.train.Saver` over every model and optimizer variable, keyed by Keras path."""

    def __init__(self, directory: str, every: int):
        super().__init__()
        self.directory = directory
        self.every = every

    def on_train_begin(self, logs: Any = None) -> None:
        self.saver = tf.compat.v1.train.Saver(
            var_list={v.path: v.value for v in _all_variables(self.model)},
            max_to_keep=1, save_relative_paths=True,
        )

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        if (batch + 1) % self.every == 0:
            self.saver.save(None, f"{self.directory}/model.ckpt", global_step=batch + 1, write_meta_graph=False)


def _all_variables(model: keras.Model) -> list[Any]:
    return [*model.variables, *model.optimizer.variables]
