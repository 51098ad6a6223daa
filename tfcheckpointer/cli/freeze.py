"""`tfcheckpointer freeze`: a checkpoint into a verified frozen GraphDef, from CONFIG, --model, --meta or --graph."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence

import yaml

from tfcheckpointer.cli.common import (
    COMMAND_LINE,
    add_import_option,
    add_set_option,
    import_modules,
    load_job,
)
from tfcheckpointer.cli.startup import import_tensorflow
from tfcheckpointer.config.loading import parse_freeze_section
from tfcheckpointer.config.schema import FreezeConfig
from tfcheckpointer.errors import ConfigError


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    text = "freeze a checkpoint into a verified frozen GraphDef, from CONFIG, --model, --meta or --graph"
    freeze = commands.add_parser("freeze", help=text, description=text, parents=[parent])
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
    source.add_argument(
        "--graph",
        metavar="GRAPH.pbtxt|GRAPH.pb",
        help="a GraphDef whose variables are named by checkpoint key (graph.pbtxt beside the "
        "checkpoints), restored by name like TF's freeze_graph --input_graph; needs --output-names",
    )
    freeze.add_argument(
        "--checkpoint",
        default="latest",
        metavar="latest|best|PREFIX|DIR",
        help="latest (default: the newest in CONFIG's checkpoint.directory or beside --meta / "
        "--graph), best (there, the best by the epoch-end scores of checkpoint.keep_best), "
        "best:DIR, a checkpoint prefix, or a directory (its newest)",
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
        "--verify-tolerance",
        type=float,
        metavar="X",
        help="largest accepted difference (default: by the compute dtype, 1e-5 for float32)",
    )
    freeze.add_argument(
        "--optimize",
        action="store_true",
        default=None,
        help="fold constants and drop what inference does not need (freeze.optimize)",
    )
    freeze.add_argument(
        "--constant",
        action="append",
        dest="constants",
        metavar="NAME=VALUE",
        help="bind placeholder NAME to VALUE (YAML: false, 0.5) before freezing, e.g. "
        "is_training=false, so only the inference branch is kept (repeatable; freeze.constants)",
    )
    add_import_option(freeze, "before building or loading the model, so that its "
                      "@keras.saving.register_keras_serializable() classes are found")
    add_set_option(freeze, "freeze.output=model.pb")
    freeze.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    given = [s for s in (args.config, args.model, args.meta, args.graph) if s is not None]
    if len(given) != 1:
        raise ConfigError(
            "give one of CONFIG, --model MODEL.keras, --meta PREFIX.meta and --graph GRAPH.pbtxt",
            file=COMMAND_LINE,
        )
    graph_file = args.meta is not None or args.graph is not None
    if args.overrides and args.config is None:
        raise ConfigError("--set overrides keys of CONFIG; there is none", file=COMMAND_LINE)
    if args.imports and graph_file:
        raise ConfigError(
            "--import registers Keras classes; --meta and --graph freeze without a Keras model",
            file=COMMAND_LINE,
        )
    job = load_job(args) if args.config is not None else None
    config = freeze_settings(
        job.freeze if job is not None else None,
        output=args.output,
        input_names=_split_names(args.input_names),
        output_names=_split_names(args.output_names),
        verify_tolerance=args.verify_tolerance,
        optimize=args.optimize,
        constants=_constants(args.constants),
    )
    if args.graph is not None and config.output_names is None:
        raise ConfigError(
            f"--graph {args.graph}: a GraphDef declares no outputs",
            file=COMMAND_LINE,
            hint="pass --output-names (e.g. output/predict)",
        )
    import_tensorflow(verbose=args.verbose, keras=not graph_file)
    # A bar of the bytes written (Keras's Progbar; Keras is loaded for it on the TF1 routes too).
    from tfcheckpointer.graph.progress import progress_bar

    if args.graph is not None:
        from tfcheckpointer.graph.session_freeze import freeze_graph_file

        done = freeze_graph_file(args.graph, config, checkpoint=args.checkpoint, progress=progress_bar)
    elif args.meta is not None:
        from tfcheckpointer.graph.session_freeze import freeze_meta_graph

        done = freeze_meta_graph(args.meta, config, checkpoint=args.checkpoint, progress=progress_bar)
    else:
        from tfcheckpointer.graph import keras_checkpoint

        import_modules(args)
        if job is not None:
            done = keras_checkpoint.freeze_from_config(
                job, checkpoint=args.checkpoint, config=config, progress=True
            )
        else:
            model = keras_checkpoint.load_keras_model(args.model)
            done = keras_checkpoint.freeze_keras_checkpoint(
                model, args.checkpoint, config, progress=True
            )
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


def _constants(values: list[str] | None) -> dict[str, object] | None:
    """`--constant is_training=false --constant rate=0.5` -> {is_training: False, rate: 0.5}."""
    if values is None:
        return None
    constants = {}
    for text in values:
        name, equals, value = text.partition("=")
        if not equals or not name.strip():
            raise ConfigError(
                f"expected NAME=VALUE, got {text!r}", file=COMMAND_LINE, key="--constant",
                hint="e.g. --constant is_training=false",
            )
        try:
            constants[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(
                f"cannot read the value {value!r} as YAML", file=COMMAND_LINE, key="--constant",
                hint="e.g. --constant is_training=false",
            ) from None
    return constants


def freeze_settings(
    base: FreezeConfig | None = None,
    *,
    output: str | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    verify_tolerance: float | None = None,
    optimize: bool | None = None,
    constants: Mapping[str, object] | None = None,
    source: str = COMMAND_LINE,
) -> FreezeConfig:
    """`base` (a job's `freeze:` section, or the defaults) with the given values replacing its own.

    The values are checked as the YAML keys are (`freeze.output` must end in
    `.pb` or `.pbtxt`, names are node names); a tensor name `name:0` is
    accepted for a node name. `constants` are added to the base's.

    Raises:
        ConfigError: No output path at all, or a value the YAML key would refuse.
    """
    given = {
        "output": output,
        "input_names": _node_names(input_names),
        "output_names": _node_names(output_names),
        "verify_tolerance": verify_tolerance,
        "optimize": optimize,
        # Added to the base's: each --constant binds one more placeholder.
        "constants": None if constants is None else {**(base.constants if base else {}), **constants},
    }
    given = {key: value for key, value in given.items() if value is not None}
    if base is None and "output" not in given:
        raise ConfigError(
            "no output path for the frozen graph",
            file=source,
            key="freeze.output",
            hint="pass --output PATH.pb (or give the job file a freeze: section)",
        )
    # The base's names come along, so that a constant given here is checked against them.
    names = {"input_names": base.input_names} if base and "input_names" not in given else {}
    checked = parse_freeze_section(
        {"output": base.output if base else None, **names, **given}, source=source
    )
    assert checked is not None  # a mapping was given
    return dataclasses.replace(
        base or checked, **{key: getattr(checked, key) for key in given}
    )


def _node_names(names: Sequence[str] | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    return tuple(name[:-2] if name.endswith(":0") else name for name in names)
