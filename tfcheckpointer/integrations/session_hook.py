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
import sys
from collections.abc import Collection, Mapping
from types import FrameType
from typing import Any

import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.directory import same_directory
from tfcheckpointer.checkpoint.listeners import Listeners
from tfcheckpointer.checkpoint.manager import CheckpointManager
from tfcheckpointer.checkpoint.restore import Restored
from tfcheckpointer.checkpoint.tf_utils import op_error_text
from tfcheckpointer.checkpoint.variables import SessionVariables, make_saver, saver_variables
from tfcheckpointer.config.schema import CheckpointConfig, FreezeConfig
from tfcheckpointer.errors import CheckpointError, ConfigError
from tfcheckpointer.graph.files import serialize_graph_def, serialize_meta_graph_def
from tfcheckpointer.graph.graph_signature import require_node, tensor_info
from tfcheckpointer.graph.publish import FrozenGraph
from tfcheckpointer.graph.signature import (
    INPUTS_COLLECTION,
    OUTPUTS_COLLECTION,
    PREDICT_METHOD_NAME,
    SERVING_SIGNATURE_KEY,
    ModelSignature,
)
from tfcheckpointer.integrations.base import ConfiguredAdapter, creation_site

logger = logging.getLogger("tfcheckpointer")

STUCK_STEP_RUNS = 100
"""Runs after which a global step that never moved since the session started is an error."""


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
    that the train op increments (a step that stays put for
    `STUCK_STEP_RUNS` runs is an error: no save would ever come). The restore
    is decided in `begin` and runs with the session's init op, so hooks that
    read the step when the session starts (`StopAtStepHook(num_steps=...)`)
    see the restored one whatever their order. A `MonitoredTrainingSession`
    `checkpoint_dir`, a `CheckpointSaverHook` or a second of these hooks on
    the same directory is refused in `begin`. The frozen graph needs
    `freeze.input_names` and `freeze.output_names` (checked in `begin`, and
    recorded in the `.meta`): a TF1 graph has no model to take them from.

    In a hand-written loop, call `begin()` once the graph is built,
    `after_create_session(session, None)` after initialising the variables,
    `after_run(tf.compat.v1.train.SessionRunContext((), session), None)` after
    each training step (it then reads the global step itself) and
    `end(session)` at the end.
    """

    def _setup(
        self,
        checkpoint: CheckpointConfig,
        freeze: FreezeConfig | None,
        verbose: int,
        listeners: Listeners,
    ) -> None:
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
        self.verbose = verbose
        self.manager = CheckpointManager(
            checkpoint, announce=print if verbose else None,
            owner=f"{type(self).__name__} created at {creation_site()}", listeners=listeners,
        )
        self.frozen: FrozenGraph | None = None

    def begin(self) -> None:
        graph = tf.compat.v1.get_default_graph()
        if graph.finalized:
            raise CheckpointError(
                "CheckpointSessionHook.begin() got a finalized graph; it adds its Saver ops there. "
                "HINT: call begin() before graph.finalize() (MonitoredSession does)."
            )
        self._global_step = tf.compat.v1.train.get_global_step(graph)
        if self._global_step is None:
            raise CheckpointError(
                "The graph has no global step. HINT: create it with "
                "tf.compat.v1.train.get_or_create_global_step() and increment it in the train op."
            )
        graph_def = graph.as_graph_def()
        signature = self._signature(graph, graph_def)
        monitored = _monitored_session_under_construction()
        if monitored is not None:
            check_sole_writer(self, self.checkpoint_config.directory, *monitored)
        # A Scaffold's init_fn runs after the init op and may load other weights (a
        # pretrained model) over the restored ones: then the restore runs again after it.
        scaffold = getattr(monitored[1], "_scaffold", None) if monitored is not None else None
        self._scaffold = scaffold
        self._init_fn_follows = getattr(scaffold, "init_fn", None) is not None
        variables = {
            naming.GLOBAL_STEP_KEY if v is self._global_step else key: v
            for key, v in saver_variables(tf.compat.v1.global_variables()).items()
        }
        self._variables = _PlannedRestore(variables)
        saver = next(iter(self._variables.savers.values()))
        self._extra_files: dict[str, bytes] = {}
        if self.checkpoint_config.save_meta_graph:
            meta = tf.compat.v1.train.export_meta_graph(
                graph=graph, saver_def=saver.as_saver_def(), clear_devices=True
            )
            if signature is not None:
                declare_signature(meta, signature)
            self._extra_files[naming.META_SUFFIX] = serialize_meta_graph_def(meta)
        self._graph_def = graph_def
        # The restore is decided now (a refusal raises before the session exists) and
        # runs as part of the session's init op, so that every hook's
        # `after_create_session` (StopAtStepHook's count of the steps left) sees the
        # restored step, whatever the order of the hooks.
        self.manager.start(self._variables, step=0, extra_files=self._extra_files)
        self._restored = self.manager.restore(current_step=0)
        self._variables.add_to_init_op(graph)
        self._first_session = True
        self._unmoved_runs = 0

    def _signature(self, graph: tf.Graph, graph_def: Any) -> ModelSignature | None:
        """The configured inputs and outputs, checked against the graph now, not at the end."""
        if self.freeze_config is None:
            return None
        names = {node.name for node in graph_def.node}
        label = "the graph CheckpointSessionHook.begin() got"
        for kind, configured in (("input", self.freeze_config.input_names),
                                 ("output", self.freeze_config.output_names)):
            for name in configured or ():
                require_node(name, names, kind, label, [], option=f"freeze.{kind}_names")
        return ModelSignature(
            tuple(tensor_info(graph, n, {}) for n in self.freeze_config.input_names or ()),
            tuple(tensor_info(graph, n, {}) for n in self.freeze_config.output_names or ()),
        )

    def after_create_session(self, session: tf.compat.v1.Session, coord: Any) -> None:
        self._variables.bind(session)
        step = int(session.run(self._global_step))
        if self._first_session:
            self._first_session = False
            # A session whose init op was not ours (a hand-written loop, a Scaffold
            # given its own init_op) gets the planned restore now.
            self._variables.apply_if_missed(step, self._restored, again=self._init_fn_follows)
            # A session MonitoredSession recreates (after a preemption) runs the
            # Scaffold's init op again: without the planned restore, whose checkpoint
            # retention may have deleted by then; the newest is restored below.
            self._variables.forget_plan(self._scaffold)
        else:
            # MonitoredSession recreated the session after an error: resume from the
            # newest checkpoint, not from the one planned in `begin`.
            self.manager.restore(current_step=step)
        self._start_step = int(session.run(self._global_step))
        self._unmoved_runs = 0
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
        if fetched is not None:
            self._check_step_moves(int(fetched))
        if fetched is not None and not self.manager.may_save(int(fetched) + 1):
            return
        self.manager.on_step(int(run_context.session.run(self._global_step)))

    def _check_step_moves(self, step: int) -> None:
        """Refuse a train op that never increments the global step: no save would ever come."""
        if step != self._start_step:
            self._unmoved_runs = -1
        elif self._unmoved_runs >= 0:
            self._unmoved_runs += 1
            if self._unmoved_runs >= STUCK_STEP_RUNS:
                self.manager.close()
                raise CheckpointError(
                    f"The global step has stayed at {step} for {STUCK_STEP_RUNS} runs, so no "
                    "checkpoint would ever be due. HINT: pass global_step= to the optimizer's "
                    "minimize() (or increment tf.compat.v1.train.get_global_step() in the "
                    "train op)."
                )

    def end(self, session: tf.compat.v1.Session) -> None:
        step = int(session.run(self._global_step))
        self.manager.on_end(step)
        if self.freeze_config is not None and self.freeze_config.at_train_end:
            from tfcheckpointer.graph.session_freeze import freeze_session

            progress = None
            if self.verbose:  # Keras's Progbar: a TF1 program loads Keras only when it asks for it
                from tfcheckpointer.graph.progress import progress_bar as progress

            self.frozen = freeze_session(
                session,
                self.freeze_config,
                description={"step": step, "checkpoint": self.manager.last_checkpoint},
                probe=self.probe,
                progress=progress,
            )
            self.manager.listeners.after_freeze(self.frozen.path, self.frozen.sidecar)


class _PlannedRestore(SessionVariables):
    """`SessionVariables` whose first restore is planned in `begin` and runs with the init op.

    The manager's restore decides in `begin` which checkpoint and which keys
    (refusing another model's before the session exists); `add_to_init_op`
    then makes the session's init op restore them right after initialising,
    so the step is restored before any hook's `after_create_session` reads it.
    Later restores (a recreated session) run through the session at once.
    """

    def __init__(self, variables: Mapping[str, tf.Variable]):
        super().__init__(variables)
        self.plan: tuple[str, list[str]] | None = None
        self._planning = True

    def restore(self, prefix: str, keys: Collection[str]) -> None:
        if self._planning:
            _check_readable(prefix, keys)
            self.plan = (prefix, sorted(keys))
        else:
            super().restore(prefix, keys)

    def add_to_init_op(self, graph: tf.Graph) -> None:
        """Make the graph's init op (the one `Scaffold` runs) restore the plan after initialising."""
        self._planning = False
        if self.plan is None:
            return
        init_ops = graph.get_collection_ref(tf.compat.v1.GraphKeys.INIT_OP)
        if len(init_ops) > 1:
            return  # Scaffold refuses such a graph; after_create_session restores instead.
        initialize = init_ops[0] if init_ops else _default_init_op()
        prefix, keys = self.plan
        # Every op of this Saver, its assignments included, runs after the initialisers.
        with tf.control_dependencies([initialize]):
            saver = make_saver({k: self.variables[k] for k in keys}, filename=prefix)
        restore = graph.get_operation_by_name(saver.saver_def.restore_op_name)
        self._initialize = initialize
        self._init_and_restore = tf.group(initialize, restore, name="init_and_restore")
        init_ops[:] = [self._init_and_restore]

    def forget_plan(self, scaffold: Any) -> None:
        """Make `scaffold` initialise only, from now on (the plan has been restored once).

        A Scaffold reads its init op once, when it is finalized, and keeps it
        (`_init_op`, the only handle TF gives); the graph is finalized by now,
        so the op without the restore is the one that was there before.
        """
        if getattr(scaffold, "_init_op", None) is getattr(self, "_init_and_restore", False):
            scaffold._init_op = self._initialize

    def apply_if_missed(self, step: int, restored: Restored | None, *, again: bool = False) -> None:
        """Restore the plan now unless the session's init op did (the step says which) and
        nothing ran after it (`again`: a Scaffold's init_fn did)."""
        if self.plan is None or restored is None:
            return
        # A restore that leaves the step at 0 (weights only) cannot be told from none: redo it.
        if again or restored.step == 0 or step != restored.step:
            super().restore(*self.plan)


def _check_readable(prefix: str, keys: Collection[str]) -> None:
    """Read every tensor the plan restores, so a damaged checkpoint is skipped now.

    Otherwise the damage would surface as a raw error while the session is
    created, instead of the restorer falling back to an older checkpoint. The
    second read, by the init op, mostly hits the page cache.
    """
    try:
        reader = tf.compat.v1.train.NewCheckpointReader(prefix)
        for key in keys:
            reader.get_tensor(key)
    except Exception as error:  # the C++ reader maps file damage to many Python types
        raise CheckpointError(f"Cannot restore checkpoint {prefix}: {op_error_text(error)}") from None


def _default_init_op() -> tf.Operation:
    """What `Scaffold.finalize` would use as its init op."""
    from tensorflow.python.ops import resources

    return tf.group(
        tf.compat.v1.global_variables_initializer(),
        resources.initialize_resources(resources.shared_resources()),
        tf.compat.v1.get_collection("saved_model_initializers"),
    )


def declare_signature(meta: Any, signature: ModelSignature) -> None:
    """Record the inputs and outputs in a MetaGraphDef, as `graph.metagraph` does for Keras models.

    `tfcheckpointer freeze --meta` and `inspect` then need no names.
    """
    for collection, side in ((INPUTS_COLLECTION, signature.inputs), (OUTPUTS_COLLECTION, signature.outputs)):
        meta.collection_def[collection].node_list.value.extend(info.tensor for info in side)
    serving = meta.signature_def[SERVING_SIGNATURE_KEY]
    serving.method_name = PREDICT_METHOD_NAME
    for info in signature.inputs:
        serving.inputs[info.name].CopyFrom(info.as_proto())
    for info in signature.outputs:
        serving.outputs[info.name].CopyFrom(info.as_proto())


def check_sole_writer(
    hook: CheckpointSessionHook, directory: str, hooks: list[Any], creator: Any
) -> None:
    """Refuse, in `begin`, another checkpoint writer on `directory` in the same MonitoredSession.

    `hooks` and `creator` are the session's (`_monitored_session_under_construction`).
    """
    owner = hook.manager.owner
    creator_dir = getattr(creator, "_checkpoint_dir", None)
    if creator_dir and same_directory(creator_dir, directory):
        raise CheckpointError(
            f"MonitoredTrainingSession(checkpoint_dir={creator_dir!r}) restores and saves "
            f"TensorFlow's own checkpoints in the directory of {owner}; the two would overwrite "
            "each other's checkpoints and state file. HINT: give MonitoredTrainingSession no "
            "checkpoint_dir (or another one)."
        )
    for other in hooks:
        if other is hook:
            continue
        if isinstance(other, CheckpointSessionHook) and same_directory(
            other.checkpoint_config.directory, directory
        ):
            raise CheckpointError(
                f"Two CheckpointSessionHooks on {directory} in one session: {owner} and "
                f"{other.manager.owner}; both would write the same steps. HINT: use one hook "
                "per directory."
            )
        other_dir = getattr(other, "_checkpoint_dir", None)
        if isinstance(other, tf.compat.v1.train.CheckpointSaverHook) and other_dir and same_directory(
            other_dir, directory
        ):
            raise CheckpointError(
                f"A CheckpointSaverHook saves to {other_dir}, the directory of {owner}; the two "
                "would overwrite each other's checkpoints and state file. HINT: remove it, or "
                "give it another directory."
            )


def _monitored_session_under_construction() -> tuple[list[Any], Any] | None:
    """`(hooks, session_creator)` of the MonitoredSession whose `__init__` is calling `begin`.

    TensorFlow gives a hook no public view of its siblings or its session
    creator, so the session under construction is found on the stack
    (`_MonitoredSession.__init__` calls every hook's `begin`); a hand-written
    loop has none.
    """
    from tensorflow.python.training.monitored_session import _MonitoredSession

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, _MonitoredSession) and frame.f_code.co_name == "__init__":
            return list(getattr(candidate, "_hooks", [])), frame.f_locals.get("session_creator")
        frame = frame.f_back
    return None
