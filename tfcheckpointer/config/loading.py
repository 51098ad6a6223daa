"""Reading and validating a tfcheckpointer job file.

A job file has one required section and a few optional ones:

    checkpoint:                  # required
      directory: ~/runs/${RUN}/ckpt
      every_n_steps: 500
    freeze:                      # optional; null or absent = no freezing
      output: ~/runs/${RUN}/model.pb
    export:                      # optional; needs freeze:
      directory: ~/serving/my_model
      keep: 5
      promote_if: {monitor: val_loss, min_delta: 0.01}
      warm_start: promoted
    model: {factory: my_project.models:build, kwargs: {units: 64}}
    data: {factory: my_project.data:load}
    fit: {epochs: 3, batch_size: 32}
    seed: 0
    listeners: [my_project.hooks:Upload]   # told of each checkpoint and frozen graph
    run_directory: ~/runs/${RUN}  # runs.jsonl; default: the parent of checkpoint.directory

Every problem raises one `ConfigError` naming the file, the dotted key, the
line and what was received versus expected. This module must stay importable
without TensorFlow so that `tfcheckpointer validate` is quick.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Mapping
from typing import Any

import yaml

from tfcheckpointer.config.checks import (
    OVERRIDE_EXAMPLE,
    OVERRIDE_KEY,
    Check,
    Context,
    basename_value,
    boolean,
    choice,
    describe,
    factory_reference,
    frozen_graph_path,
    graph_def_format,
    integer,
    join,
    keyword_arguments,
    local_path,
    mapping,
    metric_name,
    node_constants,
    node_names,
    number,
    or_null,
    path_value,
    restore_value,
    signal_names,
)
from tfcheckpointer.config.schema import (
    BEST_MODES,
    EXPORT_FORMATS,
    ON_EXISTING_CHOICES,
    WARM_START_CHOICES,
    CheckpointConfig,
    ExportConfig,
    FactoryConfig,
    FreezeConfig,
    JobConfig,
    KeepBestConfig,
    PromoteIfConfig,
)
from tfcheckpointer.errors import ConfigError


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
        raise Context(source).expected("", "a mapping of sections at the top level", data)
    known_lines: dict[str, int | None] = dict(lines or {})
    if overrides:
        data = apply_overrides(data, overrides, source=source)
        _forget_lines(known_lines, overrides)
    context = Context(source, known_lines)
    values = _parse_fields(context, "", data, _JOB_FIELDS, required=("checkpoint",))
    check_export_needs_freeze(context, values.get("export"), values.get("freeze"))
    return JobConfig(**values, source=source)


def parse_override(text: str) -> tuple[str, Any]:
    """Splits `KEY=VALUE` (as given to `--set`) and reads VALUE as YAML.

    Example:
        parse_override("checkpoint.every_n_steps=10")  # ("checkpoint.every_n_steps", 10)

    Raises:
        ConfigError: With `file="<--set>"`, when the text is not `KEY=VALUE`.
    """
    context = Context("<--set>")
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or not OVERRIDE_KEY.fullmatch(key):
        raise context.expected("", "KEY=VALUE with a dotted KEY", text, hint=OVERRIDE_EXAMPLE)
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
        if not isinstance(key, str) or not OVERRIDE_KEY.fullmatch(key):
            raise Context("<--set>").expected("", "a dotted key", key, hint=OVERRIDE_EXAMPLE)
        *parents, leaf = key.split(".")
        section = result
        for depth, name in enumerate(parents, start=1):
            child = {} if section.get(name) is None else section[name]
            if not isinstance(child, Mapping):
                parent = ".".join(parents[:depth])
                message = f"cannot set {key!r}: {parent} is {describe(child)}, not a mapping"
                raise Context(source).error(key, message)
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
            raise Context(config.source).error(
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
    return _checkpoint(Context(source), prefix, data)


def parse_freeze_section(
    data: Mapping[str, Any] | None, *, source: str = "<arguments>", prefix: str = "freeze"
) -> FreezeConfig | None:
    """Like `parse_checkpoint_section` for the freeze section; `None` means no freezing."""
    return None if data is None else _freeze(Context(source), prefix, data)


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
            children = [(join(path, str(k.value)), k, v) for k, v in node.value]
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



# --- Sections ------------------------------------------------------------------


def _parse_fields(
    context: Context,
    prefix: str,
    data: Any,
    fields: Mapping[str, Check],
    *,
    required: tuple[str, ...] = (),
    forbidden: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Checks a section's keys against its field table and returns the checked values."""
    section = mapping(context, prefix, data)
    for name in section:
        key = join(prefix, str(name))
        if forbidden and name in forbidden:
            raise context.error(key, "cannot be set in the config", hint=forbidden[name])
        if name not in fields:
            raise context.error(key, f"unknown key {name!r}", hint=_suggest(str(name), fields))
    for name in required:
        if name not in section:
            raise context.error(join(prefix, name), f"{join(prefix, name)} is required")
    return {name: fields[name](context, join(prefix, name), v) for name, v in section.items()}


def _suggest(name: str, allowed: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "allowed keys: " + ", ".join(allowed)


def _checkpoint(context: Context, prefix: str, data: Any) -> CheckpointConfig:
    values = _parse_fields(context, prefix, data, _CHECKPOINT_FIELDS, required=("directory",))
    # `async` is the YAML key; Python cannot take it as a keyword, so `async_save` is its twin.
    if "async" in values:
        if "async_save" in values:
            raise context.error(
                join(prefix, "async_save"), "give one of 'async' and 'async_save', not both"
            )
        values["async_save"] = values.pop("async")
    if values.get("every_n_steps") is None and values.get("every_n_seconds") is None:
        raise context.error(
            prefix,
            "missing trigger: set every_n_steps or every_n_seconds (or both)",
            hint="e.g. every_n_steps: 1000",
        )
    return CheckpointConfig(**values)


def _freeze(context: Context, prefix: str, data: Any) -> FreezeConfig:
    values = _parse_fields(context, prefix, data, _FREEZE_FIELDS, required=("output",))
    first_seen: dict[str, str] = {}
    for field_name in ("input_names", "output_names"):
        for index, name in enumerate(values.get(field_name) or ()):
            key = f"{join(prefix, field_name)}[{index}]"
            if name in first_seen:
                message = f"duplicate node name {name!r}, also at {first_seen[name]}"
                raise context.error(key, message)
            first_seen[name] = key
    if values.get("constants") is None:
        values.pop("constants", None)
    for name in values.get("constants") or {}:
        if name in (values.get("input_names") or ()):
            raise context.error(
                f"{join(prefix, 'constants')}.{name}",
                f"{name!r} is bound to a constant and listed in input_names",
                hint="a bound placeholder is no input of the frozen graph; drop one of the two",
            )
    return FreezeConfig(**values)


def parse_export_section(
    data: Mapping[str, Any] | None, freeze: FreezeConfig | None, *, source: str = "<arguments>"
) -> ExportConfig | None:
    """Like `parse_freeze_section` for the export section, checked against `freeze`."""
    context = Context(source)
    export = None if data is None else _export(context, "export", data)
    check_export_needs_freeze(context, export, freeze)
    return export


def check_export_needs_freeze(
    context: Context, export: ExportConfig | None, freeze: FreezeConfig | None
) -> None:
    """An export is the train-end frozen graph, so `export:` needs one."""
    if export is not None and (freeze is None or not freeze.at_train_end):
        raise context.error(
            "export",
            "needs the train-end frozen graph, but "
            + ("there is no freeze section" if freeze is None else "freeze.at_train_end is false"),
            hint="add freeze: {output: ...} (with at_train_end: true, the default)",
        )


def _export(context: Context, prefix: str, data: Any) -> ExportConfig:
    values = _parse_fields(context, prefix, data, _EXPORT_FIELDS, required=("directory",))
    return ExportConfig(**values)


def _keep_best(context: Context, prefix: str, data: Any) -> KeepBestConfig:
    if isinstance(data, KeepBestConfig):
        return data
    values = _parse_fields(context, prefix, data, _KEEP_BEST_FIELDS, required=("monitor",))
    return KeepBestConfig(**_with_mode(context, prefix, values))


def _promote_if(context: Context, prefix: str, data: Any) -> PromoteIfConfig:
    if isinstance(data, PromoteIfConfig):
        return data
    values = _parse_fields(context, prefix, data, _PROMOTE_IF_FIELDS, required=("monitor",))
    at_most, at_least = values.get("at_most"), values.get("at_least")
    if at_most is not None and at_least is not None and at_least > at_most:
        raise context.error(
            join(prefix, "at_least"),
            f"at_least {at_least:g} is above at_most {at_most:g}, so no model could be promoted",
        )
    return PromoteIfConfig(**_with_mode(context, prefix, values))


def _with_mode(context: Context, prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with `mode` resolved from the monitor's name where the section leaves it out."""
    if "mode" not in values:
        values["mode"] = _mode_of(values["monitor"])
        if values["mode"] is None:
            raise context.error(
                join(prefix, "mode"),
                f"cannot tell from the name {values['monitor']!r} whether a lower or a higher "
                "value is better",
                hint="add mode: min or mode: max",
            )
    return values


def _mode_of(monitor: str) -> str | None:
    """The direction a metric's name implies, as Keras's EarlyStopping(mode="auto") reads it."""
    name = monitor.removeprefix("val_")
    if name.endswith(("loss", "error")):
        return "min"
    if name.endswith(("accuracy", "acc", "auc")):
        return "max"
    return None


def _factory(context: Context, prefix: str, data: Any) -> FactoryConfig:
    values = _parse_fields(context, prefix, data, _FACTORY_FIELDS, required=("factory",))
    return FactoryConfig(**values)


def _listeners(context: Context, prefix: str, data: Any) -> tuple[FactoryConfig, ...]:
    """`listeners:`: a list of `package.module:function` references or factory mappings."""
    if data is None:
        return ()
    if not isinstance(data, (list, tuple)):
        raise context.expected(
            prefix, f"a list, each item {_LISTENER}", data,
            hint=f"write it as a list: [{data!r}]" if isinstance(data, str) else None,
        )
    listeners = []
    for index, item in enumerate(data):
        key = f"{prefix}[{index}]"
        if isinstance(item, Mapping):
            listeners.append(_factory(context, key, item))
        elif isinstance(item, str):
            listeners.append(FactoryConfig(factory_reference(context, key, item)))
        else:
            raise context.expected(key, _LISTENER, item)
    return tuple(listeners)


def _fit(context: Context, prefix: str, data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    return _parse_fields(context, prefix, data, _FIT_FIELDS, forbidden=_FIT_FORBIDDEN)


_CHECKPOINT_FIELDS: dict[str, Check] = {
    "directory": path_value,
    "basename": basename_value,
    "every_n_steps": or_null(integer(1)),
    "every_n_seconds": or_null(number("> 0", lambda x: x > 0)),
    "max_to_keep": or_null(integer(1)),
    "keep_checkpoint_every_n_hours": or_null(number("> 0", lambda x: x > 0)),
    "include_optimizer": boolean,
    "restore": restore_value,
    "restore_optimizer": boolean,
    "on_existing": choice(*ON_EXISTING_CHOICES),
    "save_at_train_end": boolean,
    "async": boolean,
    "async_save": boolean,
    "on_error": choice("raise", "warn"),
    "max_total_bytes": or_null(integer(1)),
    "spare_data_file": boolean,
    "save_on_signals": signal_names,
    "lock": boolean,
    "save_meta_graph": boolean,
    "save_graph_def": graph_def_format,
    "keep_best": or_null(_keep_best),
}
_KEEP_BEST_FIELDS: dict[str, Check] = {
    "k": integer(1),
    "monitor": metric_name,
    "mode": choice(*BEST_MODES),
}
_FREEZE_FIELDS: dict[str, Check] = {
    "output": frozen_graph_path,
    "input_names": or_null(node_names),
    "output_names": or_null(node_names),
    "verify": boolean,
    "verify_tolerance": or_null(number(">= 0", lambda x: x >= 0)),
    "verify_batch_size": integer(1),
    "at_train_end": boolean,
    "optimize": boolean,
    "required": boolean,
    "probe": or_null(_factory),
    "constants": or_null(node_constants),
}
_EXPORT_FIELDS: dict[str, Check] = {
    "directory": path_value,
    "keep": or_null(integer(1)),
    "format": choice(*EXPORT_FORMATS),
    "promote_if": or_null(_promote_if),
    "warm_start": choice(*WARM_START_CHOICES),
}
_PROMOTE_IF_FIELDS: dict[str, Check] = {
    "monitor": metric_name,
    "mode": choice(*BEST_MODES),
    "min_delta": number(">= 0", lambda x: x >= 0),
    "min_relative_delta": number(">= 0", lambda x: x >= 0),
    "at_most": or_null(number("(any finite value)", lambda x: True)),
    "at_least": or_null(number("(any finite value)", lambda x: True)),
}
_FACTORY_FIELDS: dict[str, Check] = {"factory": factory_reference, "kwargs": keyword_arguments}
_LISTENER = "a 'package.module:function' reference or a {factory: ..., kwargs: {...}} mapping"
# Passed to keras `Model.fit` as keyword arguments.
_FIT_FIELDS: dict[str, Check] = {
    "epochs": integer(1),
    "batch_size": or_null(integer(1)),
    "verbose": choice(0, 1, 2, "auto"),
    "steps_per_epoch": or_null(integer(1)),
    "validation_split": number(">= 0 and < 1", lambda x: 0 <= x < 1),
    "validation_steps": or_null(integer(1)),
    "validation_batch_size": or_null(integer(1)),
    "validation_freq": integer(1),
    "shuffle": boolean,
    "initial_epoch": integer(0),
    "class_weight": or_null(mapping),
}
_FIT_FORBIDDEN = {
    "callbacks": "tfcheckpointer adds the checkpoint callback; configure it under 'checkpoint:'",
    "x": "the training data comes from the data factory ('data:')",
    "y": "the training data comes from the data factory ('data:')",
}
_JOB_FIELDS: dict[str, Check] = {
    "checkpoint": _checkpoint,
    "freeze": or_null(_freeze),
    "export": or_null(_export),
    "model": or_null(_factory),
    "data": or_null(_factory),
    "fit": _fit,
    # numpy accepts seeds in [0, 2**32 - 1].
    "seed": or_null(integer(0, 2**32 - 1)),
    "listeners": _listeners,
    "run_directory": or_null(local_path),
}
