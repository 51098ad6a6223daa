"""Freezing a checkpoint with a Keras model of its architecture (`tfcheckpointer freeze` CONFIG / --model).

The model comes from a job file's `model.factory` (`freeze_from_config`) or a
saved `.keras` file (`load_keras_model`); the checkpoint's model variables
are restored into it (optimizer state is not needed), its layers' derived
state is recomputed from them (`derived.finalize_derived_state`) and
`keras_freeze.freeze_model` does the rest: the same verified, published
frozen graph as the train-end freeze.
"""

from __future__ import annotations

import os
import re

import keras
import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.bundle import check_compatible, read_step
from tfcheckpointer.checkpoint.derived import finalize_derived_state
from tfcheckpointer.checkpoint.keys import checkpoint_variables
from tfcheckpointer.checkpoint.tf_utils import quiet_tensorflow
from tfcheckpointer.checkpoint.variables import EagerVariables
from tfcheckpointer.config.factories import resolve_factory
from tfcheckpointer.config.schema import FreezeConfig, JobConfig
from tfcheckpointer.errors import ConfigError, FreezeError, RestoreMismatchError, first_line
from tfcheckpointer.graph.files import sniff_graph_file
from tfcheckpointer.graph.keras_freeze import freeze_model
from tfcheckpointer.graph.locate import LATEST, resolve_checkpoint
from tfcheckpointer.graph.probe import ProbeLike, configured_probe
from tfcheckpointer.graph.publish import FrozenCheckpoint


def freeze_from_config(
    job: JobConfig,
    *,
    checkpoint: str = LATEST,
    config: FreezeConfig | None = None,
    probe: ProbeLike = None,
    progress: bool = False,
) -> FrozenCheckpoint:
    """Build the job's model with `model.factory`, restore a checkpoint, freeze it.

    Args:
        job: A validated job file; `model:` is required, `data:` is not used.
        checkpoint: `latest` (the newest in `checkpoint.directory`), `best`
            (the best there by `checkpoint.keep_best`), a directory or a prefix.
        config: How to freeze; by default the job's `freeze:` section.
        probe: Verification inputs (as `freeze_model` takes them); by
            default the `freeze.probe` factory of `config`, else a random batch.
        progress: Show a progress bar of the bytes written.
    """
    if job.model is None:
        raise ConfigError(
            "model.factory is required to freeze from a job file",
            file=job.source,
            key="model.factory",
            hint="add a 'model:' section with 'factory: package.module:function', "
            "or pass --model MODEL.keras",
        )
    config = config or job.freeze
    if config is None:
        raise ConfigError(
            "the job file has no freeze: section", file=job.source, key="freeze",
            hint="pass --output PATH.pb or add a freeze: section",
        )
    prefix = resolve_checkpoint(
        checkpoint, directory=job.checkpoint.directory, basename=job.checkpoint.basename,
        keep_best=job.checkpoint.keep_best,
    )
    build_model = resolve_factory(job.model, key="model.factory", source=job.source)
    model = build_model(**job.model.kwargs)
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"expected the factory to return a keras.Model, got {type(model).__name__}",
            file=job.source,
            key="model.factory",
        )
    probe = configured_probe(probe, config, source=job.source)
    return freeze_keras_checkpoint(
        model, prefix, config, basename=job.checkpoint.basename, probe=probe, progress=progress
    )


def load_keras_model(path: str) -> keras.Model:
    """A model's architecture (and weights, soon replaced) from a `.keras` file, not compiled."""
    path = os.fspath(path)
    if not tf.io.gfile.exists(path):
        raise FreezeError(f"No such file: {path}")
    sniffed = sniff_graph_file(path)
    if sniffed is not None:
        raise FreezeError(
            f"{path} is a {sniffed[0]}, not a Keras model. HINT: give a .keras file to --model "
            "(freeze a .meta with --meta)."
        )
    try:
        with quiet_tensorflow():
            return keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras reports a bad file with many exception types
        unknown = _UNKNOWN_CLASS.search(str(error))
        if unknown is not None:
            raise FreezeError(_unknown_class_message(path, unknown)) from None
        raise FreezeError(
            f"Cannot load a Keras model from {path}: {first_line(error).rstrip('.')}. "
            "HINT: give a file written by model.save('model.keras')."
        ) from None


# Keras's words (keras/src/saving/serialization_lib.py) for a class or function that no
# imported module registered; the object's config, which it quotes, starts with its module.
_UNKNOWN_CLASS = re.compile(
    r"Could not locate (?P<kind>class|function) '(?P<name>[^']+)'"
    r"(?:.*?Full object config: \{'module': (?:'(?P<module>[\w.]+)'|None))?",
    re.DOTALL,
)


def _unknown_class_message(path: str, unknown: re.Match[str]) -> str:
    kind, name, module = unknown["kind"], unknown["name"], unknown["module"]
    if module is not None:
        to_import = f"--import {module} (the module that defined it when the model was saved)"
    else:
        to_import = (
            f"--import MODULE, the module that defines {name!r} (one defined in a script's "
            "__main__ must move into a module first)"
        )
    return (
        f"Cannot load a Keras model from {path}: it uses the custom {kind} {name!r}, which no "
        f"imported module has registered. HINT: pass {to_import}; its "
        "@keras.saving.register_keras_serializable() classes are then found."
    )


def freeze_keras_checkpoint(
    model: keras.Model,
    checkpoint: str,
    config: FreezeConfig,
    *,
    basename: str | None = None,
    probe: ProbeLike = None,
    progress: bool = False,
) -> FrozenCheckpoint:
    """Restore a checkpoint's model variables into `model` and freeze it with `freeze_model`.

    Only the model's variables must be in the checkpoint; optimizer state is
    not needed and `global_step` (the step in the sidecar) is optional.

    Args:
        model: A built functional or Sequential model of the checkpoint's
            architecture. Without an optimizer it is compiled with a plain
            SGD one, so that its checkpoint keys can be derived.
        checkpoint: A prefix, a directory (its newest checkpoint) or
            `best:DIR` (its best-scored one, see `locate.resolve_checkpoint`).
        config: How to freeze; `config.output` is the file to write.
        basename: In a directory without a state file, only
            `<basename>-<step>` checkpoints count.
        probe: Verification inputs, as `freeze_model` takes them.
        progress: Show a progress bar of the bytes written.

    Raises:
        RestoreMismatchError: The checkpoint holds another model.
    """
    prefix = resolve_checkpoint(checkpoint, basename=basename)
    if getattr(model, "optimizer", None) is None:
        model.compile(optimizer=keras.optimizers.SGD())
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    variables = EagerVariables(checkpoint_variables(model, include_optimizer=False))
    shapes = variables.shapes()
    try:
        present = check_compatible(prefix, shapes, optional={naming.GLOBAL_STEP_KEY})
    except RestoreMismatchError as error:
        raise error.with_hint("give a checkpoint written while training this model.") from None
    step = read_step(prefix, present)[0]
    variables.restore(prefix, [key for key in shapes if key in present])
    finalize_derived_state(model)
    frozen = freeze_model(
        model, config, step=step, checkpoint=prefix, probe=probe, progress=progress
    )
    return FrozenCheckpoint(frozen, prefix, step)
