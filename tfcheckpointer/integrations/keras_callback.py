"""`CheckpointCallback`: the Keras adapter over `CheckpointManager` and `freeze_model`."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import keras

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.cluster import (
    cluster_of,
    primary_copies,
    settle_synced_on_read,
    tf_config_workers,
)
from tfcheckpointer.checkpoint.derived import finalize_derived_state
from tfcheckpointer.checkpoint.keys import checkpoint_variables, model_variable_keys
from tfcheckpointer.checkpoint.listeners import Listeners
from tfcheckpointer.checkpoint.manager import CheckpointManager
from tfcheckpointer.checkpoint.restore import StartOver
from tfcheckpointer.config.schema import RESTORE_LATEST, CheckpointConfig, FreezeConfig
from tfcheckpointer.errors import BackendError, CheckpointError, FreezeError
from tfcheckpointer.export import warm_start
from tfcheckpointer.export.exporter import ExportedVersion, export_version, utc_now
from tfcheckpointer.export.manifest import final_metrics
from tfcheckpointer.graph import metagraph
from tfcheckpointer.graph.files import serialize_graph_def, serialize_meta_graph_def
from tfcheckpointer.graph.keras_freeze import (
    check_model_freezable,
    freeze_model,
    model_probe,
    model_signature,
)
from tfcheckpointer.graph.publish import FrozenGraph
from tfcheckpointer.graph.signature import ModelSignature
from tfcheckpointer.integrations.base import ConfiguredAdapter, creation_site
from tfcheckpointer.integrations.gate import ChampionGate
from tfcheckpointer.integrations.validation import require_validation_data

logger = logging.getLogger("tfcheckpointer")


def require_tensorflow_backend() -> None:
    backend = keras.config.backend()
    if backend != "tensorflow":
        raise BackendError(
            f"tfcheckpointer writes TensorFlow checkpoints and graphs, but Keras runs on the "
            f"{backend!r} backend. HINT: set KERAS_BACKEND=tensorflow before importing keras."
        )


KERAS_MULTI_WORKER_ISSUE = "https://github.com/keras-team/keras/issues/20585"


def refuse_keras_3_multi_worker(environ: Mapping[str, str]) -> None:
    """Say in one line that Keras 3's `fit` cannot train on several workers, before it fails obscurely.

    Keras 3's `fit` fails under MultiWorkerMirroredStrategy before any callback
    runs ("Attempt to convert a value (PerReplica...)"), so this is checked when
    the callback is made: a `TF_CONFIG` of several workers, and no tf_keras.
    """
    workers = tf_config_workers(environ)
    legacy = environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true")
    if workers < 2 or legacy or "tf_keras" in sys.modules:
        return
    raise BackendError(
        f"Keras 3's model.fit cannot train with MultiWorkerMirroredStrategy (TF_CONFIG names "
        f"{workers} workers): upstream keras-team/keras issue 20585 ({KERAS_MULTI_WORKER_ISSUE}). "
        "HINT: train a tf_keras model (pip install tf_keras; TF_USE_LEGACY_KERAS=1) with this "
        "callback, or write a custom training loop checkpointed by tfcheckpointer.Checkpointer."
    )


class _TrainEnd(keras.callbacks.Callback):
    """Appended after every other callback of a `fit()`: runs the checkpointer's train-end work."""

    def __init__(self, owner: CheckpointCallback):
        super().__init__()
        self.owner = owner

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self.owner.finish_training()

    def _implements_train_batch_hooks(self) -> bool:
        return False

    def _implements_test_batch_hooks(self) -> bool:
        return False

    def _implements_predict_batch_hooks(self) -> bool:
        return False


def _run_train_end_last(callback: CheckpointCallback) -> bool:
    """Append a `_TrainEnd` to the callback list of the `fit()` calling `on_train_begin`.

    Keras calls `on_train_end` in list order, and a callback listed after
    this one may still change the weights there (EarlyStopping with
    `restore_best_weights`). Keras 3 and tf_keras both call `on_train_begin`
    from a `CallbackList` method whose `self` holds the list; a custom loop
    that calls the hooks itself has none, and the work stays in `on_train_end`.
    """
    frame = sys._getframe(1)
    for _ in range(8):
        frame = frame.f_back
        if frame is None:
            return False
        owner = frame.f_locals.get("self")
        callbacks = getattr(owner, "callbacks", None)
        if frame.f_code.co_name == "on_train_begin" and isinstance(callbacks, list) and any(
            c is callback for c in callbacks
        ):
            # A CallbackList the user reuses for several fit() calls already has it.
            if not any(isinstance(c, _TrainEnd) and c.owner is callback for c in callbacks):
                callbacks.append(_TrainEnd(callback))
            return True
    return False


def _retrace(model: Any) -> None:
    """Rebuild the model's train / test / predict functions after a restore.

    A traced function holds derived state (Normalization's mean) as a
    constant; one traced before the restore -- the first step of a model
    built by it, an earlier `fit()` -- would go on computing with the old one.
    """
    for kind in ("train", "test", "predict"):
        if getattr(model, f"{kind}_function", None) is not None:
            getattr(model, f"make_{kind}_function")(force=True)


def _is_built(model: Any) -> bool:
    return all(getattr(layer, "built", True) for layer in [model, *model._flatten_layers()])


class CheckpointCallback(ConfiguredAdapter, keras.callbacks.Callback):
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
    `freeze` section is given; with an `export` section that graph is then
    published as the next numbered version (`exported`) and promoted -- with
    `export.promote_if`, only if it beats the promoted version on
    `validation_data`. Set `data_fingerprint` before `fit()` to record the
    data in its manifest. With `export.warm_start: promoted`, a run after one
    whose version was not promoted starts from the promoted version's
    checkpoint instead of the newest.

    Build it from keyword arguments named like the YAML `checkpoint:` keys
    plus `freeze=`, `export=`, `probe=`, `listeners=`, `validation_data=` and
    `verbose=` (each explained under `ConfiguredAdapter`, whose `__init__` it
    uses), or with `from_yaml` / `from_dict`.
    """

    supports_export = True
    _for_fit = True
    """False for the callback a `Checkpointer` drives: custom loops train on several workers in Keras 3."""

    def _setup(
        self,
        checkpoint: CheckpointConfig,
        freeze: FreezeConfig | None,
        verbose: int,
        listeners: Listeners,
    ) -> None:
        require_tensorflow_backend()
        if self._for_fit:
            refuse_keras_3_multi_worker(os.environ)
        keras.callbacks.Callback.__init__(self)
        self.checkpoint_config = checkpoint
        self.freeze_config = freeze
        self.verbose = verbose
        self.manager = CheckpointManager(
            self.checkpoint_config, announce=self._print if verbose else None,
            owner=f"{type(self).__name__} created at {creation_site()}", listeners=listeners,
        )
        self.frozen: FrozenGraph | None = None
        self.freeze_error: FreezeError | None = None
        """Why the train-end freeze failed, with `freeze.required: false`."""
        self.exported: ExportedVersion | None = None
        """The version this run published (`export:`), if any."""
        self.data_fingerprint: str | None = None
        """Recorded in the exported version's manifest; `tfcheckpointer train` sets it."""
        self._started: str | None = None
        self._restored_once = False
        self.started_from: int | None = None
        """The step training started from: the restored one, else the model's own; None before."""
        self.started_from_version: int | None = None
        """The promoted version this run started from (`export.warm_start: promoted`), if any."""
        self._waiting_for_build = False
        self._freeze_refused: FreezeError | None = None
        self._probe_batch: Any = None
        self._runs_last = False
        self._gate: ChampionGate | None = None
        self._variables: Mapping[str, Any] = {}

    @property
    def step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if getattr(self.model, "optimizer", None) is None:
            raise CheckpointError("The model has no optimizer. HINT: call model.compile() first.")
        self._gate = self._champion_gate()
        self._runs_last = _run_train_end_last(self)
        self.frozen = self.freeze_error = self._freeze_refused = None
        self.exported = None
        self._started = utc_now()
        self._waiting_for_build = not _is_built(self.model)
        if self._waiting_for_build:
            # A subclassed model without an input shape gets its variables in its first
            # step; everything that step changes is overwritten by the restore after it.
            logger.info("The model is built by its first step; checkpointing starts after it.")
            return
        self._start(current_step=self.step)

    def _champion_gate(self) -> ChampionGate | None:
        """`export.promote_if`'s gate over `validation_data`; refused before anything is written."""
        export = self.export_config
        if export is None or export.promote_if is None:
            return None
        source = self.job_config.source
        validation = require_validation_data(self.validation_data, source=source)
        return ChampionGate(export.promote_if, export.directory, validation, source=source)

    def _graph_signature(self) -> ModelSignature | None:
        """The train-end frozen graph's inputs and outputs; None when there will be none."""
        config = self.freeze_config
        if config is None or not config.at_train_end or self._freeze_refused is not None:
            return None
        return model_signature(self.model, config.input_names, config.output_names)

    def _start(self, *, current_step: int) -> None:
        self._check_freezable()
        if self._gate is not None:
            self._gate.check(self.model, self._graph_signature())
        optimizer = self.model.optimizer
        # Keras builds the optimizer on the first step; its slots must exist to be restored.
        if not getattr(optimizer, "built", False):
            optimizer.build(self.model.trainable_variables)
        variables = checkpoint_variables(
            self.model, include_optimizer=self.checkpoint_config.include_optimizer
        )
        self._variables = variables
        # Under MultiWorkerMirroredStrategy every worker runs this; only the chief writes.
        cluster = cluster_of(getattr(self.model, "distribute_strategy", None))
        # `current_step` is 0 for a model built by its first step: that step is not saved yet.
        self.manager.start(variables, step=current_step, cluster=cluster)
        if not self._restored_once:
            # A refused restore raises here, before anything is written.
            optimizer_name = type(optimizer).__name__
            plan = self._start_plan()
            restored = self.manager.restore(
                current_step=current_step, optimizer_name=optimizer_name,
                start_over=None if plan.action == warm_start.RESUME else StartOver(plan.prefix),
            )
            # The restore is done (eager variables): a checkpoint downloaded for it goes now,
            # not at train end, which a fit() that raises never reaches.
            self.manager.restorer.copies.clear()
            self._report_start(plan)
            if restored:
                finalize_derived_state(self.model)
                _retrace(self.model)
            self.started_from = restored.step if restored else current_step
            self.started_from_version = plan.version
            self._restored_once = True
        self._write_graph_files(variables)

    def _start_plan(self) -> warm_start.StartPlan:
        """Where this run starts: its own newest checkpoint, or a promoted version (`export.warm_start`)."""
        if self.export_config is None or self.checkpoint_config.restore != RESTORE_LATEST:
            return warm_start.StartPlan(warm_start.RESUME, "no export.warm_start applies")
        return warm_start.read_start_plan(self.export_config, self.manager.directory)

    def _report_start(self, plan: warm_start.StartPlan) -> None:
        """One line for a run that starts over rather than resuming, naming where and why."""
        if plan.action == warm_start.RESUME:
            return
        aside = self.manager.restorer.set_aside_to
        moved = f"; this directory's checkpoints were set aside in {aside}" if aside else ""
        if plan.action == warm_start.FROM_PROMOTED:
            message = (
                f"Starting from promoted version {plan.version} (step {plan.step}, {plan.prefix}): "
                f"{plan.reason}{moved}."
            )
        else:
            message = f"Starting fresh: {plan.reason}{moved}."
        logger.info("%s", message)
        if self.verbose:
            self._print(message)

    def _write_graph_files(self, variables: Mapping[str, Any]) -> None:
        """The `.meta` beside every checkpoint and the graph file, traced from the restored model.

        Traced after the restore: a layer's derived state (Normalization's
        mean) is a constant in the trace, and must be the restored one.
        """
        if not self.manager.writes:
            return
        meta = self._meta_graph(variables)
        if meta is None:
            return
        if self.checkpoint_config.save_meta_graph:
            self.manager.saver.extra_files = {naming.META_SUFFIX: serialize_meta_graph_def(meta)}
        graph_format = self.checkpoint_config.save_graph_def
        if graph_format is not None:
            self.manager.write_file(
                naming.GRAPH_DEF_FILENAMES[graph_format],
                serialize_graph_def(metagraph.graph_def_of(meta), as_text=graph_format == "pbtxt"),
            )

    def _check_freezable(self) -> None:
        """Find now, before the first step, what would make the train-end freeze fail."""
        config = self.freeze_config
        if config is None or not config.at_train_end:
            return
        try:
            with primary_copies():
                check_model_freezable(self.model, config)
                # Resolved now, so that a bad probe fails before training rather than after it.
                self._probe_batch = (
                    model_probe(self.model, config, self.probe) if config.verify else None
                )
        except FreezeError as error:
            if config.required:
                raise FreezeError(
                    f"{error} (checked before training; freeze.required: false trains anyway "
                    "and skips the freeze)"
                ) from None
            logger.warning("%s -- training without a train-end freeze (freeze.required: false).", error)
            self._freeze_refused = self.freeze_error = error

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
            with primary_copies():
                return metagraph.build_meta_graph(self.model, signature, variables)
        except FreezeError as error:
            logger.warning("Writing checkpoints without a .meta or graph file: %s", error)
            return None

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        if self._waiting_for_build:
            self._waiting_for_build = False
            self._start(current_step=0)
        self.manager.on_step(self.step)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        # The epoch's metrics score the checkpoints saved during it (`keep_best`).
        self.manager.on_epoch_end(epoch + 1, logs or {})

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if not self._runs_last:
            self.finish_training()

    def finish_training(self) -> None:
        """The train-end work: the final checkpoint, the frozen graph, then the exported version.

        In `fit()` it runs after every other callback's `on_train_end`
        (EarlyStopping may restore its best weights there), so both hold the
        weights the model has when `fit()` returns. A failed freeze keeps
        the checkpoints and is raised after, with `fit`'s History on the
        error (`error.history`) and in `model.history`; with
        `freeze.required: false` it is logged and kept in `freeze_error`.
        Either way no version is exported and LATEST is untouched.
        """
        if self._waiting_for_build:
            # No batch ran (`epochs <= initial_epoch`, an empty dataset): the model never
            # got its variables, so there is nothing to save or freeze.
            logger.warning("Training ran no step, so the model was never built; nothing to save.")
            self._waiting_for_build = False
            return
        step = self.step
        # The weights, not the dropout seeds: those are what the frozen graph holds.
        weights = {id(v) for v in self.model.weights}
        model_keys = [k for k, v in model_variable_keys(self.model).items() if id(v) in weights]
        self.manager.on_end(step, must_hold=model_keys)
        config = self.freeze_config
        if config is None or not config.at_train_end or self._freeze_refused is not None:
            return
        if self.manager.cluster is not None:
            # The chief freezes its own copies: give them the values the checkpoint holds.
            settle_synced_on_read(self._variables)
        if not self.manager.writes:
            return
        checkpoint = self.manager.last_checkpoint
        try:
            with primary_copies():
                self.frozen = freeze_model(
                    self.model, config,
                    step=naming.step_of_prefix(checkpoint) if checkpoint else step,
                    checkpoint=checkpoint, probe=self._probe_batch, progress=bool(self.verbose),
                )
        except FreezeError as error:
            self.freeze_error = error
            error.history = getattr(self.model, "history", None)
            logger.error("The train-end freeze failed; the checkpoints are kept: %s", error)
            if config.required:
                raise
            return
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
        self.manager.listeners.after_freeze(self.frozen.path, self.frozen.sidecar)
        if self.export_config is not None:
            self._export(self.frozen)

    def _export(self, frozen: FrozenGraph) -> None:
        """Publish the verified frozen graph as the next version, with the last epoch's metrics.

        With `export.promote_if`, the gate judges it against the champion first.
        """
        assert self.export_config is not None
        history = getattr(self.model, "history", None)
        judgement = self._gate.judge(self.model, frozen) if self._gate is not None else None
        self.exported = export_version(
            self.export_config, frozen, job=self.job_config,
            metrics=final_metrics(getattr(history, "history", None)),
            decision=judgement.decision if judgement else None,
            evaluation=judgement.evaluation.as_dict() if judgement else None,
            data_fingerprint=self.data_fingerprint, started=self._started,
        )
        if self.verbose:
            self._print(
                f"Exported version {self.exported.version} to {self.exported.path}"
                + (" (promoted)." if self.exported.promoted else " (not promoted).")
            )
        self.manager.listeners.after_export(
            self.exported.version, self.exported.path, self.exported.promoted
        )

    # tf_keras (Keras 2, TF_USE_LEGACY_KERAS=1) asks its callbacks which batch hooks they use.
    def _implements_train_batch_hooks(self) -> bool:
        return True

    def _implements_test_batch_hooks(self) -> bool:
        return False

    def _implements_predict_batch_hooks(self) -> bool:
        return False

    @staticmethod
    def _print(message: str) -> None:
        from keras.src.utils import io_utils

        io_utils.print_msg(message)
