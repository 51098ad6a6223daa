"""The value checks of the YAML schema: each takes (context, dotted key, value).

A check returns the value as the config holds it, or raises the one
`ConfigError` that names the file, the key, its line, what was received and
what was expected.
"""

from __future__ import annotations

import difflib
import glob
import math
import os
import re
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tfcheckpointer.config import urls
from tfcheckpointer.config.schema import RESTORE_LATEST, RESTORE_NONE
from tfcheckpointer.errors import ConfigError

_PARENT_KEY = re.compile(r"(.*)(?:\.[^.]*|\[\d+\])")
OVERRIDE_KEY = re.compile(r"[\w-]+(?:\.[\w-]+)*")
_ENV_REFERENCE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_BASENAME = re.compile(r"[^/\\]*[^/\\-]")
_NODE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/>]*")
DOTTED_NAME = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_FACTORY_REFERENCE = re.compile(rf"{DOTTED_NAME}:{DOTTED_NAME}")
OVERRIDE_EXAMPLE = "e.g. --set checkpoint.every_n_steps=100"
_RESTORE_MODES = (RESTORE_LATEST, RESTORE_NONE)
# Tighter than difflib's 0.6, so that a path such as 'best' is not taken for a misspelt mode.
_MODE_TYPO_CUTOFF = 0.75
_FROZEN_GRAPH_SUFFIXES = (".pb", ".pbtxt")
_SIGNALS = ("SIGTERM", "SIGINT")
_GRAPH_DEF_FORMATS = ("pbtxt", "pb")


@dataclass(frozen=True)
class Context:
    """Where values come from, so that errors can say so."""

    source: str
    lines: Mapping[str, int | None] = field(default_factory=dict)

    def error(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(
            message, file=self.source, key=key or None, line=self._line(key), hint=hint
        )

    def expected(self, key: str, expected: str, value: Any, hint: str | None = None) -> ConfigError:
        return self.error(key, f"expected {expected}, got {describe(value)}", hint)

    def _line(self, key: str) -> int | None:
        # A key the file lacks (e.g. a missing required one) points at its parent.
        while key:
            if key in self.lines:
                return self.lines[key]
            match = _PARENT_KEY.fullmatch(key)
            key = match.group(1) if match else ""
        return None


Check = Callable[[Context, str, Any], Any]


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (bool)"
    if isinstance(value, (int, float)):
        return reprlib.repr(value)
    return f"{reprlib.repr(value)} ({type(value).__name__})"


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def or_null(check: Check) -> Check:
    def check_or_null(context: Context, key: str, value: Any) -> Any:
        return None if value is None else check(context, key, value)

    return check_or_null


def integer(minimum: int, maximum: int | None = None) -> Check:
    expected = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"

    def check(context: Context, key: str, value: Any) -> int:
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


def number(expected: str, in_range: Callable[[float], bool]) -> Check:
    def check(context: Context, key: str, value: Any) -> float:
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


def boolean(context: Context, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise context.expected(key, "a boolean", value)
    return value


def choice(*choices: Any) -> Check:
    def check(context: Context, key: str, value: Any) -> Any:
        # Compare types too: `True == 1`, but `verbose: true` is not `verbose: 1`.
        if any(type(value) is type(choice) and value == choice for choice in choices):
            return value
        raise context.expected(key, "one of " + ", ".join(map(repr, choices)), value)

    return check


def mapping(context: Context, key: str, value: Any) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise context.expected(key, "a mapping", value)
    return dict(value)


def path_value(context: Context, key: str, value: Any) -> str:
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

    path = os.path.expanduser(_ENV_REFERENCE.sub(substitute, value))
    masked = urls.masked_password(path)
    if masked is not None:  # fsspec's ftp://, sftp://, http:// take one from the URL
        raise context.error(
            key, f"cannot use {masked!r}: it holds a password, which would be in every log line, "
            "sidecar and manifest that names the path",
            hint="give the credentials the way the backend reads them (its environment variables "
            "or configuration files), never in the configuration",
        )
    # Checked here, before anything is written: a URL nothing here can reach.
    problem = urls.backend_problem(path)
    if problem is not None:
        reason, hint = problem
        raise context.error(key, f"cannot use {path!r}: {reason}", hint=hint)
    return path


def local_path(context: Context, key: str, value: Any) -> str:
    """A path on this machine: `run_directory`'s history file is appended to, which URLs cannot do."""
    path = path_value(context, key, value)
    if "://" in path:
        raise context.expected(key, "a local directory", value, hint="keep the run history on this machine")
    return path


def basename_value(context: Context, key: str, value: Any) -> str:
    if not isinstance(value, str) or not _BASENAME.fullmatch(value):
        raise context.expected(
            key,
            "a file name without '/' or '\\' that does not end in '-'",
            value,
            hint="checkpoint files are named '<basename>-<step>'",
        )
    return value


def restore_value(context: Context, key: str, value: Any) -> str:
    # `restore: None` is the string "None" in YAML; read it as the user meant.
    if isinstance(value, str) and value.lower() in _RESTORE_MODES:
        return value.lower()
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        # YAML reads `null`, `~`, `no` and `off` as non-strings.
        raise context.expected(
            key,
            "'latest', 'none' or a checkpoint prefix path",
            value,
            hint="write 'none' to start fresh or 'latest' to resume",
        )
    path = path_value(context, key, value)
    mode = difflib.get_close_matches(path.strip().lower(), _RESTORE_MODES, 1, _MODE_TYPO_CUTOFF)
    # A misspelt mode would be taken for a path and fail only when training starts (or, once
    # the run has checkpoints of its own, be passed over), so it is refused here; a path that
    # exists is what it says, however it is spelt.
    if mode and not _names_existing_path(path):
        raise context.error(
            key,
            f"{os.fspath(value)!r} is neither a restore mode ('latest', 'none') "
            "nor an existing checkpoint or directory",
            hint=f"did you mean {mode[0]!r}?",
        )
    return path


def _names_existing_path(path: str) -> bool:
    """Whether `path` is a file or directory, or the prefix of checkpoint files (`<path>.index`)."""
    return os.path.lexists(path) or bool(glob.glob(glob.escape(path) + ".*"))


def frozen_graph_path(context: Context, key: str, value: Any) -> str:
    path = path_value(context, key, value)
    if not path.endswith(_FROZEN_GRAPH_SUFFIXES):
        raise context.expected(key, "a path ending in .pb or .pbtxt", value)
    return path


def node_names(context: Context, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise context.expected(key, "a non-empty list of node names", value)
    names = []
    for index, name in enumerate(value):
        item_key = f"{key}[{index}]"
        # `output/predict:0` is the node's first output, which is what a name stands for,
        # as on the command line; another output of the node is not.
        if isinstance(name, str) and name.endswith(":0"):
            name = name[: -len(":0")]
        if isinstance(name, str) and ":" in name:
            raise context.error(
                item_key,
                f"give the node name, not the tensor name {name!r}; a frozen graph's inputs "
                "and outputs are the first output of their node",
                hint=f"write {name.partition(':')[0]!r} if you mean its first output",
            )
        if not isinstance(name, str) or not _NODE_NAME.fullmatch(name):
            raise context.expected(
                item_key, "a TensorFlow node name (letters, digits and _ . - / >)", name
            )
        names.append(name)
    return tuple(names)


def node_constants(context: Context, key: str, value: Any) -> dict[str, bool | int | float]:
    """`{node name: bool or number}`: placeholders to bind before freezing a TF1 graph."""
    constants = {}
    for name, constant in mapping(context, key, value).items():
        item_key = f"{key}.{name}"
        # `is_training:0` is the placeholder's only output, as for node_names.
        if isinstance(name, str) and name.endswith(":0"):
            name = name[: -len(":0")]
        if not isinstance(name, str) or not _NODE_NAME.fullmatch(name):
            raise context.expected(
                key, "TensorFlow node names as keys (letters, digits and _ . - / >)", name,
                hint=f"write {name.partition(':')[0]!r}" if isinstance(name, str) else None,
            )
        if not isinstance(constant, (bool, int, float)) or (
            isinstance(constant, float) and not math.isfinite(constant)
        ):
            raise context.expected(
                item_key, "a boolean or a number", constant, hint=f"e.g. {name}: false"
            )
        constants[name] = constant
    return constants


def signal_names(context: Context, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise context.expected(key, "a list of signal names (SIGTERM, SIGINT)", value)
    for index, name in enumerate(value):
        if name not in _SIGNALS:
            raise context.expected(f"{key}[{index}]", "'SIGTERM' or 'SIGINT'", name)
    return tuple(dict.fromkeys(value))


def graph_def_format(context: Context, key: str, value: Any) -> str | None:
    if value is False or value is None:
        return None
    if value in _GRAPH_DEF_FORMATS:
        return value
    raise context.expected(key, "'pbtxt', 'pb' or false", value)


def metric_name(context: Context, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise context.expected(key, "a metric name as fit() logs it (val_loss, accuracy)", value)
    return value


def factory_reference(context: Context, key: str, value: Any) -> str:
    if not isinstance(value, str) or not _FACTORY_REFERENCE.fullmatch(value):
        raise context.expected(key, "'package.module:function'", value)
    return value


def keyword_arguments(context: Context, key: str, value: Any) -> dict[str, Any]:
    kwargs = {} if value is None else mapping(context, key, value)
    for name in kwargs:
        if not isinstance(name, str):
            raise context.expected(key, "keyword names (strings) as keys", name)
    return kwargs

