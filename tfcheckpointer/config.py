"""The YAML schema of a tfcheckpointer job.

A job file has one required section and a few optional ones:

    checkpoint:                  # required
      directory: ~/runs/${RUN}/ckpt
      every_n_steps: 500
    freeze:                      # optional; null or absent = no freezing
      output: ~/runs/${RUN}/model.pb
    model: {factory: my_project.models:build, kwargs: {units: 64}}
    data: {factory: my_project.data:load}
    fit: {epochs: 3, batch_size: 32}
    seed: 0

Every problem raises one `ConfigError` naming the file, the dotted key, the
line and what was received versus expected. This module must stay importable
without TensorFlow so that `tfcheckpointer validate` is quick.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from tfcheckpointer.errors import ConfigError


@dataclass(frozen=True)
class CheckpointConfig:
    """Where, when and how many checkpoints to write; see the module docstring."""

    directory: str
    basename: str = "model.ckpt"
    every_n_steps: int | None = None
    every_n_seconds: float | None = None
    max_to_keep: int | None = 5
    keep_checkpoint_every_n_hours: float | None = None
    include_optimizer: bool = True
    restore: str = "latest"
    save_at_train_end: bool = True
    async_save: bool = False
    on_error: str = "raise"
    max_total_bytes: int | None = None
    save_on_signals: tuple[str, ...] = ("SIGTERM", "SIGINT")
    lock: bool = True
    save_meta_graph: bool = True
    save_graph_def: str | None = "pbtxt"


@dataclass(frozen=True)
class FreezeConfig:
    """How to freeze the trained model into a GraphDef (`.pb` or `.pbtxt`)."""

    output: str
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    verify: bool = True
    verify_tolerance: float = 1e-5
    verify_batch_size: int = 4
    at_train_end: bool = True
    optimize: bool = False


@dataclass(frozen=True)
class FactoryConfig:
    """A `package.module:function` to call with `kwargs` to build a model or data."""

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobConfig:
    """A whole validated job file. `source` is the file path or a label for messages."""

    checkpoint: CheckpointConfig
    freeze: FreezeConfig | None = None
    model: FactoryConfig | None = None
    data: FactoryConfig | None = None
    fit: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    source: str = "<dict>"


def load_config(
    path: str | os.PathLike, overrides: Mapping[str, Any] | None = None
) -> JobConfig:
    """Reads, validates and returns a job file.

    Example:
        config = load_config("job.yaml", {"checkpoint.every_n_steps": 10})

    Args:
        path: The YAML file. Only plain YAML is accepted (safe loading).
        overrides: Dotted keys to set before validating, e.g. from `--set`.

    Raises:
        ConfigError: The file cannot be read, is not YAML, or breaks the schema.
    """
    source = os.fspath(path)
    data, lines = _read_yaml(source)
    return parse_config(data, source=source, overrides=overrides, lines=lines)


def parse_config(
    data: Mapping[str, Any] | None,
    *,
    source: str = "<dict>",
    overrides: Mapping[str, Any] | None = None,
    lines: Mapping[str, int] | None = None,
) -> JobConfig:
    """Validates already-loaded job data; `None` counts as an empty file.

    Args:
        data: The top-level mapping.
        source: The file path or a label, used in error messages.
        overrides: Dotted keys to set before validating.
        lines: Dotted key -> 1-based line, so that errors can point into the file.

    Raises:
        ConfigError: The data breaks the schema.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise _Context(source).expected("", "a mapping of sections at the top level", data)
    known_lines: dict[str, int | None] = dict(lines or {})
    if overrides:
        data = apply_overrides(data, overrides, source=source)
        _forget_lines(known_lines, overrides)
    context = _Context(source, known_lines)
    values = _parse_fields(context, "", data, _JOB_FIELDS, required=("checkpoint",))
    return JobConfig(**values, source=source)


def parse_override(text: str) -> tuple[str, Any]:
    """Splits `KEY=VALUE` (as given to `--set`) and reads VALUE as YAML.

    Example:
        parse_override("checkpoint.every_n_steps=10")  # ("checkpoint.every_n_steps", 10)

    Raises:
        ConfigError: With `file="<--set>"`, when the text is not `KEY=VALUE`.
    """
    context = _Context("<--set>")
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not _OVERRIDE_KEY.fullmatch(key):
        raise context.expected("", "KEY=VALUE with a dotted KEY", text, hint=_OVERRIDE_EXAMPLE)
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        message = f"cannot read the value {raw!r} as YAML: {_yaml_problem(exc)}"
        raise context.error(key, message) from exc


def apply_overrides(
    data: Mapping[str, Any], overrides: Mapping[str, Any], *, source: str
) -> dict[str, Any]:
    """Returns a deep copy of `data` with each dotted key of `overrides` set.

    Missing or null sections on the way are created, so `freeze.output=m.pb`
    turns freezing on even when the file says `freeze: null`.

    Raises:
        ConfigError: A key is malformed, or would be set inside a non-mapping value.
    """
    result = copy.deepcopy(dict(data))
    for key, value in overrides.items():
        if not isinstance(key, str) or not _OVERRIDE_KEY.fullmatch(key):
            raise _Context("<--set>").expected("", "a dotted key", key, hint=_OVERRIDE_EXAMPLE)
        *parents, leaf = key.split(".")
        section = result
        for depth, name in enumerate(parents, start=1):
            child = {} if section.get(name) is None else section[name]
            if not isinstance(child, Mapping):
                parent = ".".join(parents[:depth])
                message = f"cannot set {key!r}: {parent} is {_describe(child)}, not a mapping"
                raise _Context(source).error(key, message)
            section[name] = child = dict(child)
            section = child
        section[leaf] = copy.deepcopy(value)
    return result


def require_job(config: JobConfig) -> JobConfig:
    """Checks that `config` can drive `tfcheckpointer train` and returns it.

    Raises:
        ConfigError: `model.factory` or `data.factory` is missing.
    """
    for section in ("model", "data"):
        if getattr(config, section) is None:
            raise _Context(config.source).error(
                f"{section}.factory",
                f"{section}.factory is required to train",
                hint=f"add a '{section}:' section with 'factory: package.module:function'",
            )
    return config


def parse_checkpoint_section(
    data: Mapping[str, Any], *, source: str = "<arguments>", prefix: str = "checkpoint"
) -> CheckpointConfig:
    """Validates one checkpoint section, e.g. Python keyword arguments.

    Args:
        data: The section's keys and values.
        source: Label for error messages.
        prefix: Dotted prefix of the keys in messages; "" names bare arguments.
    """
    return _checkpoint(_Context(source), prefix, data)


def parse_freeze_section(
    data: Mapping[str, Any] | None, *, source: str = "<arguments>", prefix: str = "freeze"
) -> FreezeConfig | None:
    """Like `parse_checkpoint_section` for the freeze section; `None` means no freezing."""
    return None if data is None else _freeze(_Context(source), prefix, data)


# --- Reading files -------------------------------------------------------------


def _read_yaml(source: str) -> tuple[Any, dict[str, int]]:
    """Returns the file's data and the line of every dotted key in it."""
    try:
        with open(source, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot read config file: {reason}", file=source) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("cannot read config file: it is not UTF-8 text", file=source) from exc
    try:
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        raise ConfigError(
            f"invalid YAML: {_yaml_problem(exc)}",
            file=source,
            line=None if mark is None else mark.line + 1,
        ) from exc
    except RecursionError as exc:
        raise ConfigError("invalid YAML: nested too deeply", file=source) from exc
    # Built after construction, which has already folded `<<:` merge keys in.
    return data, {} if node is None else _key_lines(node)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    return getattr(exc, "problem", None) or str(exc)


def _key_lines(root: yaml.Node) -> dict[str, int]:
    lines: dict[str, int] = {}
    visited: set[int] = set()  # aliases share nodes and may even form cycles

    def walk(node: yaml.Node, path: str) -> None:
        if id(node) in visited:
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            children = [(_join(path, str(k.value)), k, v) for k, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            children = [(f"{path}[{i}]", item, item) for i, item in enumerate(node.value)]
        else:
            return
        for child_path, key_node, value_node in children:
            lines[child_path] = key_node.start_mark.line + 1  # the last duplicate wins, as in YAML
            walk(value_node, child_path)

    walk(root, "")
    return lines


def _forget_lines(lines: dict[str, int | None], overrides: Mapping[str, Any]) -> None:
    """Overridden values did not come from the file, so its lines would mislead."""
    for key in overrides:
        for stale in [k for k in lines if k.startswith((f"{key}.", f"{key}["))]:
            del lines[stale]
        lines[key] = None


# --- Checking values -----------------------------------------------------------

_PARENT_KEY = re.compile(r"(.*)(?:\.[^.]*|\[\d+\])")
_OVERRIDE_KEY = re.compile(r"[\w-]+(?:\.[\w-]+)*")
_ENV_REFERENCE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_BASENAME = re.compile(r"[^/\\]*[^/\\-]")
_NODE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/>]*")
_DOTTED_NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_FACTORY_REFERENCE = re.compile(rf"{_DOTTED_NAME}:{_DOTTED_NAME}")
_OVERRIDE_EXAMPLE = "e.g. --set checkpoint.every_n_steps=100"
_RESTORE_MODES = ("latest", "none")
_FROZEN_GRAPH_SUFFIXES = (".pb", ".pbtxt")
_SIGNALS = ("SIGTERM", "SIGINT")
_GRAPH_DEF_FORMATS = ("pbtxt", "pb")


@dataclass(frozen=True)
class _Context:
    """Where values come from, so that errors can say so."""

    source: str
    lines: Mapping[str, int | None] = field(default_factory=dict)

    def error(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            message, file=self.source, key=key or None, line=self._line(key), hint=hint
        )

    def expected(self, key: str, expected: str, value: Any, hint: str | None = None) -> ConfigError:
        return self.error(key, f"expected {expected}, got {_describe(value)}", hint)

    def _line(self, key: str) -> int | None:
        # A key the file lacks (e.g. a missing required one) points at its parent.
        while key:
            if key in self.lines:
                return self.lines[key]
            match = _PARENT_KEY.fullmatch(key)
            key = match.group(1) if match else ""
        return None


Check = Callable[[_Context, str, Any], Any]


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (bool)"
    if isinstance(value, (int, float)):
        return reprlib.repr(value)
    return f"{reprlib.repr(value)} ({type(value).__name__})"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _or_null(check: Check) -> Check:
    def check_or_null(context: _Context, key: str, value: Any) -> Any:
        return None if value is None else check(context, key, value)

    return check_or_null


def _integer(minimum: int, maximum: int | None = None) -> Check:
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"

    def check(context: _Context, key: str, value: Any) -> int:
        # bool is an int subclass, but `every_n_steps: true` is a mistake.
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            raise context.expected(key, expected, value)
        return value

    return check


def _number(expected: str, in_range: Callable[[float], bool]) -> Check:
    def check(context: _Context, key: str, value: Any) -> float:
        number = _as_float(value)
        if number is None or not in_range(number):
            raise context.expected(key, f"a number {expected}", value)
        return number

    return check


def _as_float(value: Any) -> float | None:
    # PyYAML reads `1e-5` (no dot) as a string, so numeric strings count too.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _boolean(context: _Context, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise context.expected(key, "a boolean", value)
    return value


def _choice(*choices: Any) -> Check:
    def check(context: _Context, key: str, value: Any) -> Any:
        # Compare types too: `True == 1`, but `verbose: true` is not `verbose: 1`.
        if any(type(value) is type(choice) and value == choice for choice in choices):
            return value
        raise context.expected(key, "one of " + ", ".join(map(repr, choices)), value)

    return check


def _mapping(context: _Context, key: str, value: Any) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise context.expected(key, "a mapping", value)
    return dict(value)


def _path(context: _Context, key: str, value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise context.expected(key, "a non-empty path", value)

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise context.error(
                key,
                f"environment variable {name!r} in {value!r} is not set",
                hint=f"set {name} or write the path out",
            )
        return os.environ[name]

    return os.path.expanduser(_ENV_REFERENCE.sub(substitute, value))


def _basename(context: _Context, key: str, value: Any) -> str:
    if not isinstance(value, str) or not _BASENAME.fullmatch(value):
        raise context.expected(
            key,
            "a file name without '/' or '\\' that does not end in '-'",
            value,
            hint="checkpoint files are named '<basename>-<step>'",
        )
    return value


def _restore(context: _Context, key: str, value: Any) -> str:
    # `restore: None` is the string "None" in YAML; read it as the user meant.
    if isinstance(value, str) and value.lower() in _RESTORE_MODES:
        return value.lower()
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise context.expected(key, "'latest', 'none' or a checkpoint prefix path", value)
    return _path(context, key, value)


def _frozen_graph_path(context: _Context, key: str, value: Any) -> str:
    path = _path(context, key, value)
    if not path.endswith(_FROZEN_GRAPH_SUFFIXES):
        raise context.expected(key, "a path ending in .pb or .pbtxt", value)
    return path


def _node_names(context: _Context, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise context.expected(key, "a non-empty list of node names", value)
    for index, name in enumerate(value):
        item_key = f"{key}[{index}]"
        if isinstance(name, str) and ":" in name:
            raise context.error(
                item_key,
                f"give the node name, not the tensor name {name!r}",
                hint=f"write {name.partition(':')[0]!r}",
            )
        if not isinstance(name, str) or not _NODE_NAME.fullmatch(name):
            raise context.expected(
                item_key, "a TensorFlow node name (letters, digits and _ . - / >)", name
            )
    return tuple(value)


def _signal_names(context: _Context, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise context.expected(key, "a list of signal names (SIGTERM, SIGINT)", value)
    for index, name in enumerate(value):
        if name not in _SIGNALS:
            raise context.expected(f"{key}[{index}]", "'SIGTERM' or 'SIGINT'", name)
    return tuple(dict.fromkeys(value))


def _graph_def_format(context: _Context, key: str, value: Any) -> str | None:
    if value is False or value is None:
        return None
    if value in _GRAPH_DEF_FORMATS:
        return value
    raise context.expected(key, "'pbtxt', 'pb' or false", value)


def _factory_reference(context: _Context, key: str, value: Any) -> str:
    if not isinstance(value, str) or not _FACTORY_REFERENCE.fullmatch(value):
        raise context.expected(key, "'package.module:function'", value)
    return value


def _kwargs(context: _Context, key: str, value: Any) -> dict[str, Any]:
    kwargs = {} if value is None else _mapping(context, key, value)
    for name in kwargs:
        if not isinstance(name, str):
            raise context.expected(key, "keyword names (strings) as keys", name)
    return kwargs


# --- Sections ------------------------------------------------------------------


def _parse_fields(
    context: _Context,
    prefix: str,
    data: Any,
    fields: Mapping[str, Check],
    *,
    required: tuple[str, ...] = (),
    forbidden: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Checks a section's keys against its field table and returns the checked values."""
    section = _mapping(context, prefix, data)
    for name in section:
        key = _join(prefix, str(name))
        if forbidden and name in forbidden:
            raise context.error(key, "cannot be set in the config", hint=forbidden[name])
        if name not in fields:
            raise context.error(key, f"unknown key {name!r}", hint=_suggest(str(name), fields))
    for name in required:
        if name not in section:
            raise context.error(_join(prefix, name), f"{_join(prefix, name)} is required")
    return {name: fields[name](context, _join(prefix, name), v) for name, v in section.items()}


def _suggest(name: str, allowed: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "allowed keys: " + ", ".join(allowed)


def _checkpoint(context: _Context, prefix: str, data: Any) -> CheckpointConfig:
    values = _parse_fields(context, prefix, data, _CHECKPOINT_FIELDS, required=("directory",))
    # `async` is the YAML key; Python cannot take it as a keyword, so `async_save` is its twin.
    if "async" in values:
        if "async_save" in values:
            raise context.error(
                _join(prefix, "async_save"), "give one of 'async' and 'async_save', not both"
            )
        values["async_save"] = values.pop("async")
    if values.get("every_n_steps") is None and values.get("every_n_seconds") is None:
        raise context.error(
            prefix,
            "missing trigger: set every_n_steps or every_n_seconds (or both)",
            hint="e.g. every_n_steps: 1000",
        )
    return CheckpointConfig(**values)


def _freeze(context: _Context, prefix: str, data: Any) -> FreezeConfig:
    values = _parse_fields(context, prefix, data, _FREEZE_FIELDS, required=("output",))
    first_seen: dict[str, str] = {}
    for field_name in ("input_names", "output_names"):
        for index, name in enumerate(values.get(field_name) or ()):
            key = f"{_join(prefix, field_name)}[{index}]"
            if name in first_seen:
                message = f"duplicate node name {name!r}, also at {first_seen[name]}"
                raise context.error(key, message)
            first_seen[name] = key
    return FreezeConfig(**values)


def _factory(context: _Context, prefix: str, data: Any) -> FactoryConfig:
    values = _parse_fields(context, prefix, data, _FACTORY_FIELDS, required=("factory",))
    return FactoryConfig(**values)


def _fit(context: _Context, prefix: str, data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    return _parse_fields(context, prefix, data, _FIT_FIELDS, forbidden=_FIT_FORBIDDEN)


_CHECKPOINT_FIELDS: dict[str, Check] = {
    "directory": _path,
    "basename": _basename,
    "every_n_steps": _or_null(_integer(1)),
    "every_n_seconds": _or_null(_number("> 0", lambda x: x > 0)),
    "max_to_keep": _or_null(_integer(1)),
    "keep_checkpoint_every_n_hours": _or_null(_number("> 0", lambda x: x > 0)),
    "include_optimizer": _boolean,
    "restore": _restore,
    "save_at_train_end": _boolean,
    "async": _boolean,
    "async_save": _boolean,
    "on_error": _choice("raise", "warn"),
    "max_total_bytes": _or_null(_integer(1)),
    "save_on_signals": _signal_names,
    "lock": _boolean,
    "save_meta_graph": _boolean,
    "save_graph_def": _graph_def_format,
}
_FREEZE_FIELDS: dict[str, Check] = {
    "output": _frozen_graph_path,
    "input_names": _or_null(_node_names),
    "output_names": _or_null(_node_names),
    "verify": _boolean,
    "verify_tolerance": _number(">= 0", lambda x: x >= 0),
    "verify_batch_size": _integer(1),
    "at_train_end": _boolean,
    "optimize": _boolean,
}
_FACTORY_FIELDS: dict[str, Check] = {"factory": _factory_reference, "kwargs": _kwargs}
# Passed to keras `Model.fit` as keyword arguments.
_FIT_FIELDS: dict[str, Check] = {
    "epochs": _integer(1),
    "batch_size": _or_null(_integer(1)),
    "verbose": _choice(0, 1, 2, "auto"),
    "steps_per_epoch": _or_null(_integer(1)),
    "validation_split": _number(">= 0 and < 1", lambda x: 0 <= x < 1),
    "validation_steps": _or_null(_integer(1)),
    "validation_batch_size": _or_null(_integer(1)),
    "validation_freq": _integer(1),
    "shuffle": _boolean,
    "initial_epoch": _integer(0),
    "class_weight": _or_null(_mapping),
}
_FIT_FORBIDDEN = {
    "callbacks": "tfcheckpointer adds the checkpoint callback; configure it under 'checkpoint:'",
    "x": "the training data comes from the data factory ('data:')",
    "y": "the training data comes from the data factory ('data:')",
}
_JOB_FIELDS: dict[str, Check] = {
    "checkpoint": _checkpoint,
    "freeze": _or_null(_freeze),
    "model": _or_null(_factory),
    "data": _or_null(_factory),
    "fit": _fit,
    # numpy accepts seeds in [0, 2**32 - 1].
    "seed": _or_null(_integer(0, 2**32 - 1)),
}
