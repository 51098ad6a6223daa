"""`tfcheckpointer train`: build the model and data from the config and fit with the callback."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from tfcheckpointer.config.factories import resolve_factory
from tfcheckpointer.config.loading import require_job
from tfcheckpointer.config.schema import JobConfig
from tfcheckpointer.errors import ConfigError

logger = logging.getLogger("tfcheckpointer")


@dataclasses.dataclass(frozen=True)
class JobResult:
    step: int
    checkpoint: str | None
    frozen: str | None
    history: dict[str, list[float]]


def _fit_arguments(data: Any, source: str) -> dict[str, Any]:
    """`model.fit` keyword arguments from what the data factory returned."""
    if isinstance(data, Mapping):
        if "callbacks" in data:
            raise ConfigError(
                "the data factory returned 'callbacks'; it may return fit's data arguments only",
                file=source,
                key="data.factory",
            )
        return dict(data)
    if isinstance(data, tuple) and len(data) == 2:
        return {"x": data[0], "y": data[1]}
    return {"x": data}


def run_job(config: JobConfig, *, quiet: bool = False) -> JobResult:
    """Train per `config` with a `CheckpointCallback`; return where things ended up.

    Keras's progress output follows `fit.verbose` (2, one line per epoch, by
    default); `quiet` turns it off whatever the file says. Saves are logged
    on the `tfcheckpointer` logger.
    """
    import keras

    from tfcheckpointer.integrations.keras_callback import CheckpointCallback

    require_job(config)
    assert config.model is not None and config.data is not None  # checked by require_job
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    callback = CheckpointCallback.from_config_object(config)
    build_model = resolve_factory(config.model, key="model.factory", source=config.source)
    load_data = resolve_factory(config.data, key="data.factory", source=config.source)
    model = build_model(**config.model.kwargs)
    if not isinstance(model, keras.Model) or model.optimizer is None:
        raise ConfigError(
            f"expected the factory to return a compiled keras.Model, got {type(model).__name__}"
            + ("" if not isinstance(model, keras.Model) else " without an optimizer"),
            file=config.source,
            key="model.factory",
            hint="call model.compile(...) in the factory",
        )
    data = _fit_arguments(load_data(**config.data.kwargs), config.source)
    fit_arguments = {"verbose": 2, **config.fit, **data}
    if quiet:
        fit_arguments["verbose"] = 0
    history = model.fit(callbacks=[callback], **fit_arguments)
    return JobResult(
        step=callback.step,
        checkpoint=callback.manager.last_checkpoint,
        frozen=callback.frozen.path if callback.frozen else None,
        history={k: [float(x) for x in v] for k, v in history.history.items()},
    )
