"""The `tfcheckpointer` command line: `train`, `validate`, `inspect`, `convert`, `freeze`, `promote`, `history`.

One module per command, each with `add_parser` and `run`. Every
`TfCheckpointerError` becomes one line on stderr and exit status 2
(`exit_codes`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tfcheckpointer.cli import convert, freeze, history, inspect, promote, train, validate
from tfcheckpointer.cli.common import log_to_stderr, verbose_parent
from tfcheckpointer.cli.exit_codes import USAGE_ERROR
from tfcheckpointer.errors import TfCheckpointerError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfcheckpointer",
        description="TF1 Saver checkpoints and verified frozen graphs from Keras training.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    parent = verbose_parent()
    for command in (train, validate, inspect, convert, freeze, promote, history):
        command.add_parser(commands, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A warning (a damaged state file skipped, say) is one line; `train` logs more.
    log_to_stderr(logging.WARNING, "tfcheckpointer: warning: %(message)s")
    try:
        return args.run(args)
    except TfCheckpointerError as error:
        print(f"tfcheckpointer: error: {error}", file=sys.stderr)
        return USAGE_ERROR
