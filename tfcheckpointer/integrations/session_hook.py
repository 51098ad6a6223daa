"""`CheckpointSessionHook`: the TF1 `SessionRunHook` adapter over `CheckpointManager`.

For graph-mode training (`MonitoredTrainingSession`, `SingularMonitoredSession`
or a hand-written session loop), driven by the same YAML and writing the same
artifacts as the Keras callback: Saver checkpoints every N global steps,
published atomically, a `.meta` beside each, `graph.pbtxt`, and a verified
frozen GraphDef at the end. All its ops are created in `begin`, so it works
with finalized graphs.
"""

from __future__ import annotations

import logging
from typing import Any

import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.manager import CheckpointManager
from tfcheckpointer.checkpoint.variables import SessionVariables, saver_variables
from tfcheckpointer.config.schema import CheckpointConfig, FreezeConfig
from tfcheckpointer.errors import CheckpointError, ConfigError
from tfcheckpointer.graph.files import serialize_graph_def, serialize_meta_graph_def
from tfcheckpointer.graph.publish import FrozenGraph
from tfcheckpointer.integrations.base import ConfiguredAdapter, creation_site

logger = logging.getLogger("tfcheckpointer")


class CheckpointSessionHook(ConfiguredAdapter, tf.compat.v1.train.SessionRunHook):
    """Checkpoints a TF1 graph's variables every N global steps; freezes it at the end.

    Example:

    ```python
    hook = CheckpointSessionHook.from_yaml("job.yaml")
    with tf.compat.v1.train.MonitoredTrainingSession(hooks=[hook]) as session:
        while not session.should_stop():
            session.run(train_op)
    ```

    Keys are the variables' own TF1 names (`dense/kernel`,
    `dense/kernel/Adam`, `global_step`), and every global variable is saved,
    as a default TF1 `Saver` does (so `include_optimizer: false` is refused).
    The graph needs a global step (`tf.compat.v1.train.get_or_create_global_step()`)
    that the train op increments. Give `MonitoredTrainingSession` no
    `checkpoint_dir`: it would save and restore on its own as well. The frozen
    graph needs `freeze.input_names` and `freeze.output_names`: a TF1 graph has
    no model to take them from.

    In a hand-written loop, call `begin()` once the graph is built,
    `after_create_session(session, None)` after initialising the variables,
    `after_run(tf.compat.v1.train.SessionRunContext((), session), None)` after
    each training step (it then reads the global step itself) and
    `end(session)` at the end.
    """

    def _setup(self, checkpoint: CheckpointConfig, freeze: FreezeConfig | None, verbose: int) -> None:
        if not checkpoint.include_optimizer:
            raise ConfigError(
                "false is not supported by CheckpointSessionHook: it saves every global "
                "variable, as a TF1 Saver does", file="<arguments>", key="checkpoint.include_optimizer",
            )
        if freeze is not None and not (freeze.input_names and freeze.output_names):
            raise ConfigError(
                "CheckpointSessionHook needs freeze.input_names and freeze.output_names: a TF1 "
                "graph has no model to take them from", file="<arguments>", key="freeze",
            )
        self.checkpoint_config = checkpoint
        self.freeze_config = freeze
        self.manager = CheckpointManager(
            checkpoint, announce=print if verbose else None,
            owner=f"{type(self).__name__} created at {creation_site()}",
        )
        self.frozen: FrozenGraph | None = None

    def begin(self) -> None:
        graph = tf.compat.v1.get_default_graph()
        self._global_step = tf.compat.v1.train.get_global_step(graph)
        if self._global_step is None:
            raise CheckpointError(
                "The graph has no global step. HINT: create it with "
                "tf.compat.v1.train.get_or_create_global_step() and increment it in the train op."
            )
        variables = {
            naming.GLOBAL_STEP_KEY if v is self._global_step else key: v
            for key, v in saver_variables(tf.compat.v1.global_variables()).items()
        }
        self._variables = SessionVariables(variables)
        saver = next(iter(self._variables.savers.values()))
        self._extra_files: dict[str, bytes] = {}
        if self.checkpoint_config.save_meta_graph:
            meta = tf.compat.v1.train.export_meta_graph(
                graph=graph, saver_def=saver.as_saver_def(), clear_devices=True
            )
            self._extra_files[naming.META_SUFFIX] = serialize_meta_graph_def(meta)
        self._graph_def = graph.as_graph_def()

    def after_create_session(self, session: tf.compat.v1.Session, coord: Any) -> None:
        self._variables.bind(session)
        step = int(session.run(self._global_step))
        self.manager.start(self._variables, step=step, extra_files=self._extra_files)
        # A refused restore raises here, before anything is written.
        self.manager.restore(current_step=step)
        graph_format = self.checkpoint_config.save_graph_def
        if graph_format is not None:
            self.manager.write_file(
                naming.GRAPH_DEF_FILENAMES[graph_format],
                serialize_graph_def(self._graph_def, as_text=graph_format == "pbtxt"),
            )

    def before_run(self, run_context: Any) -> Any:
        # Fetched with the train op, so reading the step costs no extra run.
        return tf.compat.v1.train.SessionRunArgs(self._global_step)

    def after_run(self, run_context: Any, run_values: Any) -> None:
        # The fetched value may be from before or after this run's increment (the two
        # ops are not ordered), so, as TF1's CheckpointSaverHook does, the exact step
        # is read only when a save may be due at the step after it.
        fetched = getattr(run_values, "results", None)
        if fetched is not None and not self.manager.may_save(int(fetched) + 1):
            return
        self.manager.on_step(int(run_context.session.run(self._global_step)))

    def end(self, session: tf.compat.v1.Session) -> None:
        step = int(session.run(self._global_step))
        self.manager.on_end(step)
        if self.freeze_config is not None and self.freeze_config.at_train_end:
            from tfcheckpointer.graph.session_freeze import freeze_session

            self.frozen = freeze_session(
                session,
                self.freeze_config,
                description={"step": step, "checkpoint": self.manager.last_checkpoint},
                probe=self.probe,
            )
