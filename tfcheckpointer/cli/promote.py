"""`tfcheckpointer promote TARGET --version N`: point LATEST at a kept version, by hand.

To roll back a bad model or to force a candidate. TARGET is the job file
(its `export.directory`) or the export directory itself. The move is
appended to the promotion log like an automatic one, with `by: manual`.
"""

from __future__ import annotations

import argparse
import os

from tfcheckpointer.cli.common import add_set_option, load_job
from tfcheckpointer.cli.startup import import_tensorflow
from tfcheckpointer.config.urls import is_url
from tfcheckpointer.errors import ConfigError, ExportError


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    text = "point an export directory's LATEST at one of its versions (roll back or force)"
    promote = commands.add_parser("promote", help=text, description=text, parents=[parent])
    promote.add_argument(
        "config", metavar="TARGET",
        help="the YAML job file (its export.directory) or the export directory",
    )
    promote.add_argument("--version", type=int, required=True, help="the version to promote")
    promote.add_argument(
        "--reason", default="promoted by hand", help="why, for the promotion log (default: %(default)s)"
    )
    add_set_option(promote, "export.directory=/srv/models/digits")
    promote.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    directory = export_directory(args)
    import_tensorflow(verbose=args.verbose, keras=False)
    from tfcheckpointer.export import versions

    kept = versions.list_versions(directory)
    if args.version not in kept:
        raise ExportError(
            f"Version {args.version} is not in {directory}; it holds "
            + (f"versions {', '.join(map(str, kept))}." if kept else "no versions.")
            + " LATEST is unchanged."
        )
    previous = versions.read_latest(directory)
    versions.move_latest(directory, args.version, by="manual", reason=args.reason)
    print(f"{directory}: LATEST {previous} -> {args.version}")
    return 0


def export_directory(args: argparse.Namespace) -> str:
    """The export directory TARGET names: itself, or the job file's `export.directory`."""
    if os.path.isdir(args.config) or is_url(args.config):
        return args.config
    config = load_job(args)
    if config.export is None:
        raise ConfigError(
            "has no export section, so it names no export directory",
            file=config.source, key="export",
            hint="give the export directory itself, or add export: {directory: ...}",
        )
    return config.export.directory
