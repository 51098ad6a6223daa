"""The `tfcheckpointer` command line: `train`, `validate`, `inspect` and `convert`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from tfcheckpointer.config import JobConfig, load_config, parse_override, require_job
from tfcheckpointer.errors import TfCheckpointerError

EXIT_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfcheckpointer",
        description="TF1 Saver checkpoints and verified frozen graphs from Keras training.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in [
        ("train", "build the model and data from CONFIG and train with checkpointing"),
        ("validate", "check CONFIG without importing TensorFlow or training"),
    ]:
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("config", help="path to the YAML job file")
        command.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a dotted key, e.g. --set checkpoint.every_n_steps=50 (repeatable)",
        )
    commands.choices["train"].add_argument(
        "-q", "--quiet", action="store_true", help="no Keras progress output"
    )
    text = "describe a checkpoint or graph file without running it"
    inspect = commands.add_parser("inspect", help=text, description=text)
    inspect.add_argument(
        "path",
        help="a checkpoint directory or prefix (or its .index file), a .pb / .pbtxt GraphDef "
        "or a .meta MetaGraphDef",
    )
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    text = "convert a graph file: .pb <-> .pbtxt, .meta -> .pb / .pbtxt (by extension)"
    convert = commands.add_parser("convert", help=text, description=text)
    convert.add_argument("input", help="a .pb, .pbtxt or .meta file")
    convert.add_argument("output", help="the .pb or .pbtxt file to write")
    convert.add_argument("-f", "--force", action="store_true", help="replace OUTPUT if it exists")
    return parser


def _load(args: argparse.Namespace) -> JobConfig:
    overrides = dict(parse_override(text) for text in args.overrides)
    return load_config(args.config, overrides)


def _describe(config: JobConfig) -> str:
    c = config.checkpoint
    triggers = [f"every {c.every_n_steps} steps" if c.every_n_steps else None,
                f"every {c.every_n_seconds:g} s" if c.every_n_seconds else None]
    text = (
        f"checkpoints {' and '.join(t for t in triggers if t)} to {c.directory}/{c.basename}-<step>"
        f" (keep {c.max_to_keep or 'all'}, restore {c.restore})"
    )
    if config.freeze is not None:
        text += f"; frozen graph to {config.freeze.output}"
    return text


def _inspect(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfcheckpointer.inspection import format_report, inspect_path

    report = inspect_path(args.path)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _convert(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfcheckpointer.convert import convert

    done = convert(args.input, args.output, force=args.force)
    print(
        f"Wrote {done.destination} ({done.destination_format}, {done.node_count} nodes, "
        f"{done.bytes:,} bytes) from {done.source} ({done.source_format})"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "convert":
            return _convert(args)
        config = _load(args)
        if args.command == "validate":
            if config.model is not None or config.data is not None:
                require_job(config)
            print(f"{args.config}: OK: {_describe(config)}")
            return 0
        require_job(config)
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("tfcheckpointer").setLevel(logging.INFO)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from tfcheckpointer.job import run_job

        result = run_job(config, verbose=0 if args.quiet else 2)
    except TfCheckpointerError as error:
        print(f"tfcheckpointer: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"Trained to step {result.step}; latest checkpoint {result.checkpoint}")
    if result.frozen:
        print(f"Frozen graph: {result.frozen}")
    return 0
