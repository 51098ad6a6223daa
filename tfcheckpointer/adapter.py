"""What every training-loop adapter shares: being built from kwargs, a dict or YAML."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tfcheckpointer.config import (
    CheckpointConfig,
    FreezeConfig,
    JobConfig,
    load_config,
    parse_checkpoint_section,
    parse_config,
    parse_freeze_section,
)


class ConfiguredAdapter:
    """Constructors shared by `CheckpointCallback` and `CheckpointSessionHook`.

    Subclasses implement `_setup(checkpoint, freeze, verbose)`.

    Args:
        freeze: The `freeze:` section as a mapping (or a `FreezeConfig`);
            None writes no frozen graph.
        verbose: 1 prints a line for each save and restore; every save is
            also logged on the `tfcheckpointer` logger whatever `verbose` is.
        **checkpoint: The keys of the YAML `checkpoint:` section
            (`directory`, `every_n_steps`, ...; `async_save` for `async`).
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

    def _setup(self, checkpoint: CheckpointConfig, freeze: FreezeConfig | None, verbose: int) -> None:
        raise NotImplementedError

    @classmethod
    def from_config_object(cls, config: JobConfig, *, verbose: int = 0) -> Any:
        """The adapter for an already validated config."""
        adapter = cls.__new__(cls)
        adapter._setup(config.checkpoint, config.freeze, verbose)
        return adapter

    @classmethod
    def from_yaml(
        cls,
        path: str | os.PathLike[str],
        overrides: Mapping[str, Any] | None = None,
        *,
        verbose: int = 0,
    ) -> Any:
        """The adapter for a YAML file's `checkpoint:` and `freeze:` sections.

        `overrides` maps dotted keys to values, e.g. `{"checkpoint.every_n_steps": 10}`.
        """
        return cls.from_config_object(load_config(path, overrides), verbose=verbose)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, verbose: int = 0) -> Any:
        """The adapter for a mapping shaped like the YAML file."""
        return cls.from_config_object(parse_config(data), verbose=verbose)
