"""What every command shares: its options and loading the job file."""

from __future__ import annotations

import argparse
import logging
import sys

from tfcheckpointer.config.factories import import_module
from tfcheckpointer.config.loading import load_config, parse_override
from tfcheckpointer.config.schema import JobConfig

COMMAND_LINE = "<command line>"


def add_set_option(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a dotted key of CONFIG, e.g. --set {example} (repeatable)",
    )


def add_import_option(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help=f"import MODULE (e.g. my_project.layers; the current directory is searched first) "
        f"{purpose} (repeatable)",
    )


def import_modules(args: argparse.Namespace) -> None:
    """Imports the `--import` modules, e.g. so that their custom Keras classes are registered."""
    for name in args.imports:
        import_module(name, key="--import", source=COMMAND_LINE)


def verbose_parent() -> argparse.ArgumentParser:
    """The `-v/--verbose` option every command takes."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-v", "--verbose", action="store_true", help="show TensorFlow's own start-up messages"
    )
    return parent


def load_job(args: argparse.Namespace) -> JobConfig:
    overrides = dict(parse_override(text) for text in args.overrides)
    return load_config(args.config, overrides)


class _StderrHandler(logging.StreamHandler):
    """Writes each record to `sys.stderr` as it is at that moment."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


_HANDLER = _StderrHandler()


def log_to_stderr(level: int, fmt: str) -> None:
    """Show the `tfcheckpointer` logger's records from `level` up on stderr, formatted by `fmt`."""
    logger = logging.getLogger("tfcheckpointer")
    _HANDLER.setFormatter(logging.Formatter(fmt))
    _HANDLER.setLevel(level)
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
