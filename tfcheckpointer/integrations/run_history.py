"""`runs.jsonl`: one JSON line per `tfcheckpointer train`, appended at the run's end.

A line is written with one `write` call on a file opened for appending, then
flushed and synced, so two runs ending at once do not interleave and a crash
leaves at most one damaged last line, which `read_runs` skips with a warning.
Nothing here imports TensorFlow: `tfcheckpointer history` reads it quickly.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
from typing import Any

from tfcheckpointer.errors import ConfigError

logger = logging.getLogger("tfcheckpointer")

RUNS_FILE = "runs.jsonl"

OUTCOME_TRAINED = "trained"
OUTCOME_FAILED = "failed"
STOPPED_BY = "stopped by "
"""An outcome's prefix when a signal stopped the run: `stopped by SIGTERM`."""


@dataclasses.dataclass
class RunRecord:
    """One run, as its `runs.jsonl` line holds it.

    `exported_version`, `promoted` and `champion` (the manifest's promotion
    decision) are null for a run without an `export:` section.
    """

    config: str
    start: str
    end: str | None = None
    duration_s: float | None = None
    started_from: int | None = None
    """The step training resumed from (0 for a fresh start); null if training never began."""
    started_from_version: int | None = None
    """The promoted version the run started from (`export.warm_start: promoted`), else null."""
    end_step: int | None = None
    steps_trained: int | None = None
    final_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    """Each metric's value at the last epoch end (`loss`, `val_loss`, ...)."""
    checkpoint: str | None = None
    frozen: str | None = None
    champion: Any = None
    exported_version: Any = None
    promoted: bool | None = None
    outcome: str | None = None
    error: str | None = None
    exit_code: int | None = None


def now() -> str:
    """The current time in UTC, ISO 8601 to the second: `2026-11-26T03:00:00+00:00`."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def finish(record: RunRecord, *, outcome: str, exit_code: int, error: str | None = None) -> None:
    """Stamp the end, the duration, the outcome and the exit code on `record`."""
    record.end = now()
    started = datetime.datetime.fromisoformat(record.start)
    record.duration_s = round(
        (datetime.datetime.fromisoformat(record.end) - started).total_seconds(), 1
    )
    record.outcome, record.exit_code, record.error = outcome, exit_code, error
    if record.started_from is not None and record.end_step is not None:
        record.steps_trained = record.end_step - record.started_from


def append_run(directory: str, record: RunRecord) -> str:
    """Append `record` to `directory/runs.jsonl` (creating both if needed); return the file's path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, RUNS_FILE)
    line = json.dumps(dataclasses.asdict(record)) + "\n"
    with open(path, "a", encoding="utf-8") as file:
        file.write(line)
        file.flush()
        os.fsync(file.fileno())
    return path


def runs_file(directory_or_file: str) -> str:
    """`runs.jsonl` of a run directory, or the path itself when it names a file."""
    if os.path.isdir(directory_or_file):
        return os.path.join(directory_or_file, RUNS_FILE)
    return directory_or_file


def read_runs(path: str) -> list[dict[str, Any]]:
    """The records of a `runs.jsonl`, oldest first; [] when it does not exist yet.

    A line that is not a JSON object (the tail of a crashed write) is skipped
    with a warning naming it.
    """
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.readlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the run history: {error}", file=path) from None
    runs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            run = json.loads(line)
        except json.JSONDecodeError:
            run = None
        if not isinstance(run, dict):
            logger.warning("%s:%d is not a run record; skipped.", path, number)
            continue
        runs.append(run)
    return runs
