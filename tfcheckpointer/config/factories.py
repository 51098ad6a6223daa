"""`package.module:function` references in a job file, and the modules they name, imported.

Modules are found as `python -m` finds them: in the current directory first,
then on `sys.path` (the installed packages). The `tfcheckpointer` script
alone would not look in the current directory, so a job's `my_factories.py`
beside the user would not be found; `python -m tfcheckpointer` would.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from types import ModuleType
from typing import Any, Callable

from tfcheckpointer.config.checks import DOTTED_NAME
from tfcheckpointer.config.schema import FactoryConfig
from tfcheckpointer.errors import ConfigError, first_line

_MODULE_NAME = re.compile(DOTTED_NAME)


def resolve_factory(factory: FactoryConfig, *, key: str, source: str) -> Callable[..., Any]:
    """The callable named by `"package.module:function"`.

    Raises:
        ConfigError: The module cannot be imported (the message says where it
            was looked for), or has no such callable.
    """
    module_name, _, attribute = factory.factory.partition(":")
    target: Any = import_module(module_name, key=key, source=source)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(
                f"module {module_name!r} has no attribute {attribute!r}", file=source, key=key
            )
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"{factory.factory!r} is not callable", file=source, key=key)
    return target


def call_factory(factory: FactoryConfig, *, key: str, source: str, hint: str) -> Any:
    """Import the factory and call it with its kwargs; what it returns.

    A factory runs before training, so one that raises (a bad keyword, a
    missing data file) is reported like a bad job file: one line naming the
    factory and its error, and the job stops with nothing written.

    Raises:
        ConfigError: The factory cannot be imported, or raised.
    """
    build = resolve_factory(factory, key=key, source=source)
    try:
        return build(**factory.kwargs)
    except Exception as error:
        raise ConfigError(
            f"the factory {factory.factory!r} raised {type(error).__name__}: {first_line(error)}",
            file=source, key=key, hint=hint,
        ) from None


def import_module(name: str, *, key: str, source: str) -> ModuleType:
    """Imports the module `name` (e.g. `my_project.layers`), the current directory searched first.

    Args:
        name: A dotted module name.
        key: The key or option that named it, for messages (`model.factory`, `--import`).
        source: The job file that named it, or a label such as `<command line>`.

    Raises:
        ConfigError: `name` is not a module name, or the module cannot be imported.
    """
    if not _MODULE_NAME.fullmatch(name):
        raise ConfigError(
            f"expected a module name such as my_project.layers, got {name!r}",
            file=source,
            key=key,
            hint=_file_name_hint(name),
        )
    directory = _search_current_directory()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if not (name == missing or name.startswith(missing + ".")):
            raise ConfigError(  # the module was found; something it imports was not
                f"cannot import module {name!r}: {error}", file=source, key=key
            ) from None
        message, hint = _not_found(missing, directory, source)
        raise ConfigError(
            f"cannot import module {name!r}: {message}",
            file=source,
            key=key,
            hint=_file_name_hint(name) if name.endswith(".py") else hint,
        ) from None
    except ImportError as error:
        raise ConfigError(f"cannot import module {name!r}: {error}", file=source, key=key) from None


def _not_found(missing: str, directory: str, source: str) -> tuple[str, str | None]:
    """Where the module `missing` was looked for, and what to do about it."""
    package, _, child = missing.rpartition(".")
    if package:
        parent = sys.modules.get(package)
        paths = list(getattr(parent, "__path__", []))
        if not paths:
            return f"{package!r} ({getattr(parent, '__file__', None)}) is not a package", None
        return f"package {package!r} ({', '.join(paths)}) has no module {child!r}", None
    return (
        f"no module {missing!r} in the current directory ({directory}) or on sys.path "
        "(the installed packages)",
        _not_found_hint(missing, source),
    )


def _search_current_directory() -> str:
    """Puts the current directory first on `sys.path`, as `python -m` does, and returns it.

    It stays there: a factory may import more of its own modules when called.
    """
    directory = os.getcwd()
    if "" not in sys.path and directory not in sys.path:
        sys.path.insert(0, directory)
    importlib.invalidate_caches()  # a module written since the directory was last listed
    return directory


def _not_found_hint(top_level: str, source: str) -> str:
    # The job file's own directory is not searched: its relative paths (checkpoint.directory,
    # freeze.output) are relative to the current directory, and so are its modules.
    if os.path.isfile(source):
        beside = os.path.dirname(os.path.abspath(source))
        for candidate in (f"{top_level}.py", top_level):
            if os.path.exists(os.path.join(beside, candidate)) and beside != os.getcwd():
                return (
                    f"{candidate} is beside the job file, in {beside}, which is not searched; "
                    "run from that directory, or add it to PYTHONPATH"
                )
    return (
        f"run from the directory that holds {top_level}.py (or the {top_level}/ package), "
        "add that directory to PYTHONPATH, or pip install the project"
    )


def _file_name_hint(name: str) -> str | None:
    # `--import my_layers.py` or `--import src/my_layers.py`: a file given for a module.
    dotted = name.removesuffix(".py").replace(os.sep, ".").replace("/", ".").strip(".")
    return f"give the module's dotted name, e.g. {dotted}" if _MODULE_NAME.fullmatch(dotted) else None
