"""`tfcheckpointer train CONFIG`: build the model and data from the job file and fit with checkpointing."""

from __future__ import annotations

import argparse
import logging
import sys

from tfcheckpointer.cli.common import add_set_option, import_tensorflow, load_job
from tfcheckpointer.config.loading import require_job


class _StderrHandler(logging.StreamHandler):
    """Writes each record to `sys.stderr` as it is at that moment."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    text = "build the model and data from CONFIG and train with checkpointing"
    train = commands.add_parser("train", help=text, description=text, parents=[parent])
    train.add_argument("config", help="path to the YAML job file")
    add_set_option(train, "checkpoint.every_n_steps=50")
    train.add_argument(
        "-q", "--quiet", action="store_true",
        help="no Keras progress output, whatever fit.verbose says (saves are still reported)",
    )
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = require_job(load_job(args))
    # Each save and the freeze are reported once, by the `tfcheckpointer` logger's records.
    logger = logging.getLogger("tfcheckpointer")
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    logger.setLevel(logging.INFO)
    import_tensorflow(verbose=args.verbose)
    from tfcheckpointer.integrations.job import run_job

    result = run_job(config, quiet=args.quiet)
    print(f"Trained to step {result.step}; latest checkpoint {result.checkpoint}")
    if result.frozen:
        print(f"Frozen graph: {result.frozen}")
    return 0
