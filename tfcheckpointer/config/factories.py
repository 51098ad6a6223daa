"""`package.module:function` references in a job file, resolved to callables."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from tfcheckpointer.config.schema import FactoryConfig
from tfcheckpointer.errors import ConfigError


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
