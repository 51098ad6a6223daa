"""`tfcheckpointer convert IN OUT`: a graph file into another format, exactly."""

from __future__ import annotations

import argparse

from tfcheckpointer.cli.startup import import_tensorflow


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    text = "convert a graph file: .pb <-> .pbtxt, .meta -> .pb / .pbtxt (by extension)"
    convert = commands.add_parser("convert", help=text, description=text, parents=[parent])
    convert.add_argument("input", help="a .pb, .pbtxt or .meta file")
    convert.add_argument("output", help="the .pb or .pbtxt file to write")
    convert.add_argument("-f", "--force", action="store_true", help="replace OUTPUT if it exists")
    convert.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import_tensorflow(verbose=args.verbose, keras=False)
    from tfcheckpointer.graph.convert import convert

    done = convert(args.input, args.output, force=args.force)
    print(
        f"Wrote {done.destination} ({done.destination_format}, {done.node_count} nodes, "
        f"{done.bytes:,} bytes) from {done.source} ({done.source_format})"
    )
    return 0
