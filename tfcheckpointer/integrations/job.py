"""`tfcheckpointer train`: build the model and data from the config and fit with the callback."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tfcheckpointer.config.factories import call_factory
from tfcheckpointer.config.loading import require_job
from tfcheckpointer.config.schema import JobConfig
from tfcheckpointer.errors import ConfigError
from tfcheckpointer.integrations.run_history import RunRecord

if TYPE_CHECKING:
    from tfcheckpointer.graph.probe import Probe
    from tfcheckpointer.integrations.keras_callback import CheckpointCallback

logger = logging.getLogger("tfcheckpointer")


@dataclasses.dataclass(frozen=True)
class JobResult:
    step: int
    checkpoint: str | None
    frozen: str | None
    history: dict[str, list[float]]
    exported: str | None = None
    """The version directory this run published (`export:`)."""
    promoted: bool | None = None
    """Whether that version was promoted (moved LATEST); None without one."""


DATA_FINGERPRINT_KEY = "fingerprint"
"""A key the data factory's mapping may hold: a string naming the data, for the export manifest."""


def _validation_data(data: Any, config: JobConfig) -> Any:
    """The validation data as the gate scores it: with `fit.validation_steps`, that many batches.

    That is Keras's idiom for a validation dataset that repeats: fit reads
    `validation_steps` batches of it, and the gate would otherwise refuse
    it (or, for a repeating generator, read it forever). They are cached on
    the first whole read: a dataset that shuffles anew on each pass would
    otherwise give the champion other rows than the new model.
    """
    import tensorflow as tf

    steps = config.fit.get("validation_steps")
    gated = config.export is not None and config.export.promote_if is not None
    if gated and isinstance(steps, int) and steps > 0 and isinstance(data, tf.data.Dataset):
        return data.take(steps).cache()
    return data


def _fit_arguments(data: Any, source: str) -> tuple[dict[str, Any], str | None]:
    """`model.fit` keyword arguments from what the data factory returned, and its fingerprint."""
    if isinstance(data, Mapping):
        if "callbacks" in data:
            raise ConfigError(
                "the data factory returned 'callbacks'; it may return fit's data arguments only",
                file=source,
                key="data.factory",
            )
        arguments = dict(data)
        fingerprint = arguments.pop(DATA_FINGERPRINT_KEY, None)
        return arguments, None if fingerprint is None else str(fingerprint)
    if isinstance(data, tuple) and len(data) == 2:
        return {"x": data[0], "y": data[1]}, None
    return {"x": data}, None


def data_probe(data: Mapping[str, Any], rows: int) -> Probe | None:
    """The first `rows` rows of fit's validation inputs, else of its training inputs.

    `data` is fit's keyword arguments. Arrays, tuples / lists / dicts of
    arrays, a `tf.data.Dataset` or a `PyDataset` (their first batch) are read;
    a generator is not, since reading it would take a batch from training.
    None when neither can be read.
    """
    from tfcheckpointer.graph.probe import Probe

    validation = data.get("validation_data")
    if isinstance(validation, (tuple, list)):
        validation = validation[0]  # (x, y) or (x, y, sample_weight), as fit takes it
    for inputs, origin in ((validation, "validation data"), (data.get("x"), "training data")):
        if inputs is not None and not isinstance(inputs, Iterator):
            return Probe(inputs, origin, rows)
    return None


def run_job(
    config: JobConfig, *, quiet: bool = False, record: RunRecord | None = None
) -> JobResult:
    """Train per `config` with a `CheckpointCallback`; return where things ended up.

    Keras's progress output follows `fit.verbose` (2, one line per epoch, by
    default); `quiet` turns it off whatever the file says. Saves are logged
    on the `tfcheckpointer` logger. Without `freeze.probe`, the frozen graph
    is verified on a batch of the data factory's validation data, else of its
    training data (`data_probe`); `export.promote_if` scores on that
    validation data. A `fingerprint` in the data factory's
    mapping is recorded in the exported version's manifest, not given to fit.
    `record` is given the steps, the last epoch's metrics and the files
    written, also when training raises.
    """
    import keras

    from tfcheckpointer.integrations.keras_callback import CheckpointCallback

    require_job(config)
    assert config.model is not None and config.data is not None  # checked by require_job
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    callback = CheckpointCallback.from_config_object(config)
    model = call_factory(
        config.model, key="model.factory", source=config.source,
        hint="it is called with model.kwargs and must return a compiled keras.Model",
    )
    if not isinstance(model, keras.Model) or model.optimizer is None:
        raise ConfigError(
            f"expected the factory to return a compiled keras.Model, got {type(model).__name__}"
            + ("" if not isinstance(model, keras.Model) else " without an optimizer"),
            file=config.source,
            key="model.factory",
            hint="call model.compile(...) in the factory",
        )
    data = call_factory(
        config.data, key="data.factory", source=config.source,
        hint="it is called with data.kwargs and must return fit's data arguments",
    )
    data, callback.data_fingerprint = _fit_arguments(data, config.source)
    callback.validation_data = _validation_data(data.get("validation_data"), config)
    if config.freeze is not None and callback.probe is None:
        callback.probe = data_probe(data, config.freeze.verify_batch_size)
    fit_arguments = {"verbose": 2, **config.fit, **data}
    if quiet:
        fit_arguments["verbose"] = 0
    try:
        history = model.fit(callbacks=[callback], **fit_arguments)
    except BaseException:
        # Keras has no hook for a fit that raised: let go of the directory's lock here, so
        # that the next run does not find a dead holder's.
        callback.manager.close()
        raise
    finally:
        if record is not None:
            _record_progress(record, callback, model)
    return JobResult(
        step=callback.step,
        checkpoint=callback.manager.last_checkpoint,
        frozen=callback.frozen.path if callback.frozen else None,
        history={k: [float(x) for x in v] for k, v in history.history.items()},
        exported=callback.exported.path if callback.exported else None,
        promoted=callback.exported.promoted if callback.exported else None,
    )


def _record_progress(record: RunRecord, callback: CheckpointCallback, model: Any) -> None:
    record.checkpoint = callback.manager.last_checkpoint
    record.frozen = callback.frozen.path if callback.frozen else None
    exported = callback.exported
    if exported is not None:
        record.exported_version = exported.version
        record.promoted = exported.promoted
        record.champion = exported.manifest.get("champion")
    if callback.started_from is None:
        return  # stopped before its first step
    record.started_from = callback.started_from
    record.started_from_version = callback.started_from_version
    record.end_step = callback.step
    # Keras's History callback keeps each epoch's logs, also when fit raised.
    epochs = getattr(getattr(model, "history", None), "history", None) or {}
    record.final_metrics = {name: float(values[-1]) for name, values in epochs.items() if values}
