"""`Checkpointer`: the custom-training-loop adapter, the Keras callback's work driven by hand.

A loop written with `tf.GradientTape` (the way to train Keras 3 models under
MultiWorkerMirroredStrategy, whose `fit` cannot) gets the same checkpoints,
`.meta`, graph file, frozen graph and export as `fit` with `CheckpointCallback`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from tfcheckpointer.errors import CheckpointError, ConfigError
from tfcheckpointer.graph.publish import FrozenGraph
from tfcheckpointer.integrations.keras_callback import CheckpointCallback


class _LoopCallback(CheckpointCallback):
    _for_fit = False


class Checkpointer:
    """Checkpoints a custom training loop: restore at the start, save after steps, freeze at the end.

    Example:

    ```python
    with strategy.scope():
        model = build_model()
        optimizer = keras.optimizers.Adam()
    checkpointer = Checkpointer(model, optimizer, directory="runs/ckpt", every_n_steps=100)
    with checkpointer:                      # restore(); on leaving without an error, end()
        while checkpointer.step < 1000:
            strategy.run(train_step, args=(next(batches),))
            checkpointer.after_step()
    ```

    The step is the optimizer's `iterations`, as with the callback. Under
    MultiWorkerMirroredStrategy every worker runs the same loop and calls the
    same methods at the same steps; only the chief writes.

    Args:
        model: A built Keras 3 or tf_keras model.
        optimizer: Its optimizer; attached as `model.optimizer` (what `compile`
            does) when the model has none. None: the compiled model's own.
        config: A YAML file's path, or a mapping shaped like the YAML file
            (`checkpoint:`, `freeze:`, `export:`, `listeners:`); or else
        **options: `CheckpointCallback`'s keyword arguments (`directory=`,
            `every_n_steps=`, `freeze=`, ...).
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any = None,
        *,
        config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
        **options: Any,
    ):
        if config is not None and options:
            raise ConfigError(
                f"give either config or keyword options, not both (got config and "
                f"{', '.join(sorted(options))})", file="<arguments>", key="config",
            )
        if optimizer is not None and getattr(model, "optimizer", None) not in (None, optimizer):
            raise ConfigError(
                "is not the model's compiled optimizer; the checkpoint must hold the state of "
                "the one that trains", file="<arguments>", key="optimizer",
            )
        if isinstance(config, Mapping):
            callback = _LoopCallback.from_dict(config)
        elif config is not None:
            callback = _LoopCallback.from_yaml(config)
        else:
            callback = _LoopCallback(**options)
        if optimizer is not None:
            model.optimizer = optimizer
        callback.set_model(model)
        self.callback = callback
        self._epoch = 0
        self._restored = False

    @property
    def step(self) -> int:
        """The optimizer's `iterations`."""
        return self.callback.step

    @property
    def frozen(self) -> FrozenGraph | None:
        """The frozen graph `end` wrote (on the chief), if a `freeze` section was given."""
        return self.callback.frozen

    def restore(self) -> int:
        """Restore the newest checkpoint (per `restore:`) and return the step to go on from."""
        self.callback.on_train_begin()
        self._restored = True
        return self.step

    def after_step(self) -> None:
        """Save if a checkpoint is due (or a stop signal came); call it after every optimizer step."""
        self._require_restored("after_step")
        self.callback.on_train_batch_end(self.step)

    def after_epoch(self, metrics: Mapping[str, Any] | None = None) -> None:
        """Score the checkpoints saved since the last call by `metrics` (for `keep_best`)."""
        self.callback.on_epoch_end(self._epoch, dict(metrics or {}))
        self._epoch += 1

    def end(self) -> None:
        """Save the final step, then freeze and export as configured."""
        self._require_restored("end")
        self.callback.finish_training()

    def _require_restored(self, method: str) -> None:
        # Else the manager has no variables yet, and fails with an AttributeError deep inside.
        if not self._restored:
            raise CheckpointError(
                f"Checkpointer.{method}() before restore(): nothing is bound to checkpoint yet. "
                "HINT: call restore() first, or run the loop inside `with checkpointer:`."
            )

    def __enter__(self) -> Checkpointer:
        self.restore()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.end()
        else:
            # The loop failed: its state may be half-updated, so nothing more is saved.
            self.callback.manager.close()
