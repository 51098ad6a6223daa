"""Listeners: user code told about each published checkpoint and frozen graph.

Like TF1's `CheckpointSaverListener`, for uploading, notifying or logging to
a tracker. A listener is any object with one or more of the methods of
`CheckpointListener`; `Listeners` calls them in order. A listener that raises
is logged by name and skipped: what it was told about is already published
and stays. `KeyboardInterrupt` and `SystemExit` pass through, so a listener
can still stop training on purpose.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from tfcheckpointer.config.checks import describe
from tfcheckpointer.config.factories import call_factory
from tfcheckpointer.config.schema import FactoryConfig
from tfcheckpointer.errors import ConfigError, first_line

logger = logging.getLogger("tfcheckpointer")

EVENTS = ("after_save", "after_freeze", "after_export")
"""The listener methods; a listener needs at least one of them."""

_EXPECTED = "a listener: an object with after_save, after_freeze or after_export"


class CheckpointListener:
    """The methods a listener may have, each doing nothing; override the ones you need.

    Subclassing is optional: any object with one or more of these methods is
    a listener. They are called with positional arguments, in the thread
    that published the checkpoint (the writer thread with `async`).

    Example:

    ```python
    class Upload(CheckpointListener):
        def after_save(self, step, prefix):
            copy_to_bucket(prefix)

    CheckpointCallback(directory="ckpt", every_n_steps=100, listeners=[Upload()])
    ```
    """

    def after_save(self, step: int, prefix: str) -> None:
        """A checkpoint is published: `prefix`'s files and the state file are complete.

        Retention may delete it at a later save.
        """

    def after_freeze(self, path: str, sidecar: str) -> None:
        """The frozen graph at `path` is published and verified; `sidecar` is its JSON description."""

    def after_export(self, version: int, path: str, promoted: bool) -> None:
        """Version `version` is published at `path` (`export:`); `promoted`: LATEST names it."""


@dataclasses.dataclass(frozen=True)
class NamedListener:
    """A listener and the name its failures are reported under."""

    name: str
    """Its class's name, or the `package.module:function` that built it."""
    listener: Any


class Listeners(CheckpointListener):
    """Tells every listener, in order; one that raises is logged and the rest are still told."""

    def __init__(self, listeners: Sequence[NamedListener] = ()) -> None:
        self.listeners = tuple(listeners)

    def __add__(self, other: Listeners) -> Listeners:
        return Listeners(self.listeners + other.listeners)

    def after_save(self, step: int, prefix: str) -> None:
        self._notify("after_save", "the checkpoint stays", step, prefix)

    def after_freeze(self, path: str, sidecar: str) -> None:
        self._notify("after_freeze", "the frozen graph stays", path, sidecar)

    def after_export(self, version: int, path: str, promoted: bool) -> None:
        self._notify("after_export", "the export stays", version, path, promoted)

    def _notify(self, event: str, kept: str, *arguments: Any) -> None:
        for named in self.listeners:
            method = getattr(named.listener, event, None)
            if method is None:
                continue
            try:
                method(*arguments)
            except Exception as error:  # KeyboardInterrupt and SystemExit pass through
                logger.warning(
                    "Listener %s failed in %s(%s): %s: %s -- %s.",
                    named.name, event, ", ".join(map(repr, arguments)),
                    type(error).__name__, first_line(error), kept,
                )
                logger.debug("Listener %s failed:", named.name, exc_info=True)


def given_listeners(listeners: Sequence[Any] | None, *, source: str = "<arguments>") -> Listeners:
    """The `listeners=` argument of an adapter: listener objects, named by their class.

    Raises:
        ConfigError: It is not a list, or an item is not a listener object.
    """
    if listeners is None:
        return Listeners()
    if not isinstance(listeners, (list, tuple)):
        raise ConfigError(
            f"expected a list of listeners, got {describe(listeners)}",
            file=source, key="listeners", hint="pass a list: listeners=[...]",
        )
    return Listeners([
        NamedListener(type(listener).__name__, _check_listener(listener, source, f"listeners[{i}]"))
        for i, listener in enumerate(listeners)
    ])


def configured_listeners(factories: Sequence[FactoryConfig], *, source: str) -> Listeners:
    """The job file's `listeners:`: each factory is imported and called with its kwargs now.

    So a misspelt reference, or a factory that fails, stops the job before
    training. Each listener is named by its reference.

    Raises:
        ConfigError: A module or function cannot be found, a factory raises,
            or returns something that is not a listener.
    """
    listeners = []
    for index, factory in enumerate(factories):
        key = f"listeners[{index}].factory"
        listener = call_factory(
            factory, key=key, source=source,
            hint="it is called with its kwargs when the job starts and must return a listener",
        )
        listeners.append(NamedListener(factory.factory, _check_listener(listener, source, key)))
    return Listeners(listeners)


def _check_listener(listener: Any, source: str, key: str) -> Any:
    if isinstance(listener, type):
        raise ConfigError(
            f"expected {_EXPECTED}, got the class {listener.__name__}",
            file=source, key=key, hint=f"pass an instance: {listener.__name__}()",
        )
    if not any(callable(getattr(listener, event, None)) for event in EVENTS):
        raise ConfigError(
            f"expected {_EXPECTED}, got {describe(listener)}", file=source, key=key,
            hint="subclass tfcheckpointer.CheckpointListener and override after_save",
        )
    return listener
