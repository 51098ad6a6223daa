"""`tfcheckpointer train`: build the model and data from the config and fit with the callback."""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from tfcheckpointer.config import FactoryConfig, JobConfig, require_job
from tfcheckpointer.errors import ConfigError

logger = logging.getLogger("tfcheckpointer")


@dataclasses.dataclass(frozen=True)
class JobResult:
    step: int
    checkpoint: str | None
    frozen: str | None
    history: dict[str, list[float]]


def resolve_factory(factory: FactoryConfig, *, key: str, source: str) -> Callable[..., Any]:
    """The callable named by `"package.module:function"`."""
    module_name, _, attribute = factory.factory.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(
            f"cannot import module {module_name!r}: {error}", file=source, key=key
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(
                f"module {module_name!r} has no attribute {attribute!r}", file=source, key=key
            )
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"{factory.factory!r} is not callable", file=source, key=key)
    return target


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


def run_job(config: JobConfig, *, verbose: int = 1) -> JobResult:
    """Train per `config` with a `CheckpointCallback`; return where things ended up."""
    import keras

    from tfcheckpointer.callback import CheckpointCallback

    require_job(config)
    assert config.model is not None and config.data is not None  # checked by require_job
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    callback = CheckpointCallback.from_config_object(config, verbose=verbose)
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
    fit_arguments = {"verbose": verbose, **config.fit, **_fit_arguments(load_data(**config.data.kwargs), config.source)}
    history = model.fit(callbacks=[callback], **fit_arguments)
    return JobResult(
        step=callback.step,
        checkpoint=callback.manager.last_checkpoint,
        frozen=callback.frozen.path if callback.frozen else None,
        history={k: [float(x) for x in v] for k, v in history.history.items()},
    )
