"""`tfcheckpointer history RUN_DIR_OR_CONFIG`: the runs of `tfcheckpointer train`, one a row.

Reads `runs.jsonl` without importing TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from tfcheckpointer.config.loading import load_config
from tfcheckpointer.config.schema import run_directory_of
from tfcheckpointer.errors import ConfigError
from tfcheckpointer.integrations.run_history import RUNS_FILE, read_runs, runs_file

COLUMNS = (
    "START", "DURATION", "STEPS", "FROM", "LOSS", "VAL_LOSS", "VERSION", "PROMOTED", "OUTCOME", "EXIT",
)


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    text = f"show the runs recorded in a run directory's {RUNS_FILE}"
    history = commands.add_parser("history", help=text, description=text, parents=[parent])
    history.add_argument(
        "target", metavar="RUN_DIR_OR_CONFIG",
        help=f"a run directory, its {RUNS_FILE}, or the YAML job file that trains into it",
    )
    history.add_argument("--json", action="store_true", help="print the records as a JSON array")
    history.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = _history_file(args.target)
    runs = read_runs(path)
    if args.json:
        print(json.dumps(runs, indent=2))
    elif not runs:
        print(f"No runs recorded in {path} yet.")
    else:
        print(format_table([_row(run) for run in runs]))
    return 0


def _history_file(target: str) -> str:
    if not os.path.exists(target):
        raise ConfigError(
            "no such run directory, history file or job file", file=target,
            hint="give the run directory (by default the parent of checkpoint.directory) "
            "or the job file",
        )
    if os.path.isdir(target) or target.endswith(".jsonl"):
        return runs_file(target)
    return os.path.join(run_directory_of(load_config(target)), RUNS_FILE)


def _row(run: dict[str, Any]) -> list[str]:
    metrics = run.get("final_metrics") or {}
    return [
        str(run.get("start") or "-"),
        _duration(run.get("duration_s")),
        _text(run.get("steps_trained")),
        _text(run.get("started_from")),
        _number(metrics.get("loss")),
        _number(metrics.get("val_loss")),
        _text(run.get("exported_version")),
        _yes_no(run.get("promoted")),
        _text(run.get("outcome")),
        _text(run.get("exit_code")),
    ]


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """`COLUMNS` over `rows`, each column as wide as its widest cell."""
    table = [list(COLUMNS), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table
    )


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def _yes_no(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else "-"


def _text(value: Any) -> str:
    return "-" if value is None else str(value)
