"""`CheckpointCallback`: the Keras adapter over `CheckpointManager` and `freeze_model`."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import keras

from tfcheckpointer.config import (
    CheckpointConfig,
    FreezeConfig,
    JobConfig,
    load_config,
    parse_checkpoint_section,
    parse_config,
    parse_freeze_section,
)
from tfcheckpointer import metagraph, naming
from tfcheckpointer.errors import BackendError, CheckpointError, FreezeError
from tfcheckpointer.freeze import FrozenGraph, freeze_model, model_signature, serialize
from tfcheckpointer.keys import checkpoint_variables
from tfcheckpointer.manager import CheckpointManager

logger = logging.getLogger("tfcheckpointer")


def require_tensorflow_backend() -> None:
    backend = keras.config.backend()
    if backend != "tensorflow":
        raise BackendError(
            f"tfcheckpointer writes TensorFlow checkpoints and graphs, but Keras runs on the "
            f"{backend!r} backend. HINT: set KERAS_BACKEND=tensorflow before importing keras."
        )


class CheckpointCallback(keras.callbacks.Callback):
    """Saves TF1 Saver checkpoints every N optimizer steps and freezes the model at the end.

    Example:

    ```python
    callback = CheckpointCallback.from_yaml("job.yaml")
    # or: CheckpointCallback(directory="runs/ckpt", every_n_steps=100,
    #                        freeze={"output": "runs/frozen.pb"})
    model.fit(x, y, epochs=5, callbacks=[callback])
    ```

    The step is the optimizer's `iterations`, so it keeps counting across
    epochs, `fit()` calls and restarts; saves fall due at its multiples of
    `every_n_steps`. On train begin the newest checkpoint is restored (model
    and optimizer), on train end a final checkpoint is written if the last
    step was not saved, and a frozen GraphDef is written and verified if a
    `freeze` section is given.

    Args:
        freeze: The `freeze:` section as a mapping (or a `FreezeConfig`);
            None writes no frozen graph.
        verbose: 1 prints a line for each save and restore, as Keras
            callbacks do; every save is also logged on the `tfcheckpointer`
            logger whatever `verbose` is.
        **checkpoint: The keys of the YAML `checkpoint:` section:
            `directory` (required), `basename`, `every_n_steps`,
            `every_n_seconds`, `max_to_keep`, `keep_checkpoint_every_n_hours`,
            `include_optimizer`, `restore`, `save_at_train_end`.
    """

    def __init__(
        self,
        *,
        freeze: Mapping[str, Any] | FreezeConfig | None = None,
        verbose: int = 0,
        **checkpoint: Any,
    ):
        if not isinstance(freeze, (FreezeConfig, type(None))):
            freeze = parse_freeze_section(freeze)
        self._setup(parse_checkpoint_section(checkpoint), freeze, verbose)

    def _setup(
        self, checkpoint: CheckpointConfig, freeze: FreezeConfig | None, verbose: int
    ) -> None:
        require_tensorflow_backend()
        super().__init__()
        self.checkpoint_config = checkpoint
        self.freeze_config = freeze
        self.verbose = verbose
        self.manager = CheckpointManager(
            self.checkpoint_config, announce=self._print if verbose else None
        )
        self.frozen: FrozenGraph | None = None
        self._restored_once = False

    @classmethod
    def from_config_object(cls, config: JobConfig, *, verbose: int = 0) -> CheckpointCallback:
        """The callback for an already validated config."""
        callback = cls.__new__(cls)
        callback._setup(config.checkpoint, config.freeze, verbose)
        return callback

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str],
        overrides: Mapping[str, Any] | None = None,
        *,
        verbose: int = 0,
    ) -> CheckpointCallback:
        """The callback for a YAML file's `checkpoint:` and `freeze:` sections.

        `overrides` maps dotted keys to values, e.g. `{"checkpoint.every_n_steps": 10}`.
        """
        return cls.from_config_object(load_config(path, overrides), verbose=verbose)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, verbose: int = 0) -> CheckpointCallback:
        """The callback for a mapping shaped like the YAML file."""
        return cls.from_config_object(parse_config(data), verbose=verbose)

    @property
    def step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise CheckpointError("The model has no optimizer. HINT: call model.compile() first.")
        # Keras builds the optimizer on the first step; its slots must exist to be restored.
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        variables = checkpoint_variables(
            self.model, include_optimizer=self.checkpoint_config.include_optimizer
        )
        meta = self._meta_graph(variables)
        extra_files = {}
        if meta is not None and self.checkpoint_config.save_meta_graph:
            extra_files[naming.META_SUFFIX] = metagraph.meta_graph_bytes(meta)
        self.manager.start(variables, step=self.step, extra_files=extra_files)
        graph_format = self.checkpoint_config.save_graph_def
        if meta is not None and graph_format is not None:
            graph_def = metagraph.graph_def_of(meta)
            self.manager.write_file(
                naming.GRAPH_DEF_FILENAMES[graph_format],
                serialize(graph_def, as_text=graph_format == "pbtxt"),
            )
        if not self._restored_once:
            self._restored_once = True
            self.manager.restore(current_step=self.step)

    def _meta_graph(self, variables: Mapping[str, Any]) -> Any:
        """The run's MetaGraphDef, built once: the graph does not change between saves."""
        config = self.checkpoint_config
        if not config.save_meta_graph and config.save_graph_def is None:
            return None
        freeze = self.freeze_config
        try:
            signature = model_signature(
                self.model,
                freeze.input_names if freeze else None,
                freeze.output_names if freeze else None,
            )
            return metagraph.build_meta_graph(self.model, signature, variables)
        except FreezeError as error:
            logger.warning("Writing checkpoints without a .meta or graph file: %s", error)
            return None

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.manager.on_step(self.step)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        step = self.step
        self.manager.on_end(step)
        if self.freeze_config is not None and self.freeze_config.at_train_end:
            self.frozen = freeze_model(
                self.model, self.freeze_config, step=step, checkpoint=self.manager.last_checkpoint
            )
            logger.info(
                "Froze graph path=%s bytes=%d nodes=%d max_abs_diff=%s",
                self.frozen.path, self.frozen.bytes, self.frozen.node_count,
                self.frozen.max_abs_diff,
            )
            if self.verbose:
                self._print(
                    f"Wrote frozen graph {self.frozen.path} ({self.frozen.node_count} nodes, "
                    f"max diff {self.frozen.max_abs_diff})."
                )

    @staticmethod
    def _print(message: str) -> None:
        from keras.src.utils import io_utils

        io_utils.print_msg(message)
