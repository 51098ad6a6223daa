"""`tfcheckpointer train CONFIG`: build the model and data from the job file and fit with checkpointing."""

from __future__ import annotations

import argparse
import logging

from tfcheckpointer.cli.common import (
    add_import_option,
    add_set_option,
    import_modules,
    load_job,
    log_to_stderr,
)
from tfcheckpointer.cli.startup import import_tensorflow
from tfcheckpointer.config.loading import require_job


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    text = "build the model and data from CONFIG and train with checkpointing"
    train = commands.add_parser("train", help=text, description=text, parents=[parent])
    train.add_argument("config", help="path to the YAML job file")
    add_set_option(train, "checkpoint.every_n_steps=50")
    train.add_argument(
        "-q", "--quiet", action="store_true",
        help="no Keras progress output, whatever fit.verbose says (saves are still reported)",
    )
    add_import_option(train, "before the factories run, e.g. to register the custom Keras "
                      "classes of a model a generic factory loads")
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = require_job(load_job(args))
    # Each save and the freeze are reported once, by the `tfcheckpointer` logger's records.
    log_to_stderr(logging.INFO, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    import_tensorflow(verbose=args.verbose)
    import_modules(args)
    from tfcheckpointer.integrations.job import run_job

    result = run_job(config, quiet=args.quiet)
    print(f"Trained to step {result.step}; latest checkpoint {result.checkpoint}")
    if result.frozen:
        print(f"Frozen graph: {result.frozen}")
    if result.exported:
        print(f"Exported version: {result.exported}")
    return 0
