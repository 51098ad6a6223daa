"""The `tfcheckpointer` command line: `train`, `validate`, `inspect`, `convert` and `freeze`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from tfcheckpointer.config import JobConfig, load_config, parse_override, require_job
from tfcheckpointer.errors import ConfigError, TfCheckpointerError

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
    _add_freeze(commands)
    return parser


def _add_freeze(commands: argparse._SubParsersAction) -> None:
    text = "freeze a checkpoint into a verified frozen GraphDef, from CONFIG, --model or --meta"
    freeze = commands.add_parser("freeze", help=text, description=text)
    freeze.add_argument(
        "config", nargs="?", help="a YAML job file; its model.factory builds the model"
    )
    source = freeze.add_mutually_exclusive_group()
    source.add_argument(
        "--model", metavar="MODEL.keras", help="a saved .keras model of the checkpoint's model"
    )
    source.add_argument(
        "--meta", metavar="PREFIX.meta", help="the MetaGraphDef beside a checkpoint (TF1 route)"
    )
    freeze.add_argument(
        "--checkpoint",
        default="latest",
        metavar="latest|PREFIX|DIR",
        help="latest (default: the newest in CONFIG's checkpoint.directory or beside --meta), "
        "a checkpoint prefix, or a directory (its newest)",
    )
    freeze.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help=".pb (binary) or .pbtxt (text); default: CONFIG's freeze.output",
    )
    for side in ("input", "output"):
        freeze.add_argument(
            f"--{side}-names",
            action="append",
            metavar="NAME[,NAME...]",
            help=f"{side} node names (repeatable); default: freeze.{side}_names, the model's "
            f"{side} layers, or the .meta's {side}s collection / serving_default signature",
        )
    freeze.add_argument(
        "--verify-tolerance", type=float, metavar="X", help="largest accepted difference (1e-5)"
    )
    freeze.add_argument(
        "--optimize",
        action="store_true",
        default=None,
        help="fold constants and drop what inference does not need (freeze.optimize)",
    )
    freeze.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a dotted key of CONFIG, e.g. --set freeze.output=model.pb (repeatable)",
    )


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


def _freeze(args: argparse.Namespace) -> int:
    given = [s for s in (args.config, args.model, args.meta) if s is not None]
    if len(given) != 1:
        raise ConfigError(
            "give one of CONFIG, --model MODEL.keras and --meta PREFIX.meta", file="<command line>"
        )
    if args.overrides and args.config is None:
        raise ConfigError("--set overrides keys of CONFIG; there is none", file="<command line>")
    job = _load(args) if args.config is not None else None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfcheckpointer import freeze_checkpoint

    config = freeze_checkpoint.freeze_settings(
        job.freeze if job is not None else None,
        output=args.output,
        input_names=_split_names(args.input_names),
        output_names=_split_names(args.output_names),
        verify_tolerance=args.verify_tolerance,
        optimize=args.optimize,
    )
    if job is not None:
        done = freeze_checkpoint.freeze_from_config(job, checkpoint=args.checkpoint, config=config)
    elif args.model is not None:
        model = freeze_checkpoint.load_keras_model(args.model)
        done = freeze_checkpoint.freeze_keras_checkpoint(model, args.checkpoint, config)
    else:
        done = freeze_checkpoint.freeze_meta_graph(args.meta, config, checkpoint=args.checkpoint)
    frozen = done.frozen
    checked = "not verified" if frozen.max_abs_diff is None else f"max diff {frozen.max_abs_diff:g}"
    print(
        f"Froze {done.checkpoint} (step {done.step}) into {frozen.path} ({frozen.node_count} "
        f"nodes, {frozen.bytes:,} bytes, {checked}); sidecar {frozen.sidecar}"
    )
    return 0


def _split_names(values: list[str] | None) -> list[str] | None:
    """`--output-names a,b --output-names c` -> [a, b, c]; node names hold no commas."""
    if values is None:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "convert":
            return _convert(args)
        if args.command == "freeze":
            return _freeze(args)
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
