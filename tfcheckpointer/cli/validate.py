"""`tfcheckpointer validate CONFIG`: check a job file without importing TensorFlow."""

from __future__ import annotations

import argparse

from tfcheckpointer.cli.common import add_set_option, load_job
from tfcheckpointer.config.loading import require_job
from tfcheckpointer.config.schema import JobConfig


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    text = "check CONFIG without importing TensorFlow or training"
    validate = commands.add_parser("validate", help=text, description=text, parents=[parent])
    validate.add_argument("config", help="path to the YAML job file")
    add_set_option(validate, "checkpoint.every_n_steps=50")
    validate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_job(args)
    if config.model is not None or config.data is not None:
        require_job(config)
    print(f"{args.config}: OK: {describe(config)}")
    return 0


def describe(config: JobConfig) -> str:
    c = config.checkpoint
    triggers = [f"every {c.every_n_steps} steps" if c.every_n_steps else None,
                f"every {c.every_n_seconds:g} s" if c.every_n_seconds else None]
    text = (
        f"checkpoints {' and '.join(t for t in triggers if t)} to {c.directory}/{c.basename}-<step>"
        f" (keep {c.max_to_keep or 'all'}, restore {c.restore})"
    )
    if config.freeze is not None:
        text += f"; frozen graph to {config.freeze.output}"
    if config.export is not None:
        text += f"; versions to {config.export.directory}/<n>"
    return text
