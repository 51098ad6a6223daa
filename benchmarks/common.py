"""What every benchmark section shares: child processes, interleaving, medians, tables, the machine.

The parent side (`run.py` and each section's `run`) imports no TensorFlow, so
that every measured fit can start in a fresh process with nothing warmed up
by an earlier one. A section module doubles as its child: `python
benchmarks/<section>.py '<json jobs>'` runs the jobs (`HANDLERS[job["kind"]]`)
and prints one JSON line. `--quick` runs the jobs in the parent instead: its
figures mean nothing, and one TensorFlow import keeps it under a minute.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FULL_MODEL = {"inputs": 512, "units": 2048, "layers": 5, "batch": 32, "steps": 200, "every": 50}
"""Dense(2048) x 5 + Adam: 71 MB of weights, 214 MB with the Adam slots; ~55 ms a step on 2 cores."""
QUICK_MODEL = {"inputs": 16, "units": 32, "layers": 2, "batch": 8, "steps": 20, "every": 5}
RESULT_MARK = "BENCHMARK-RESULT "
"""Starts the child's one line of JSON output, so stray prints from TensorFlow cannot be mistaken for it."""


def run_jobs(section: str, jobs: list[dict[str, Any]], *, fresh: bool) -> list[dict[str, Any]]:
    """Results of `jobs`: each in its own fresh process with `fresh`, else all in this one."""
    if fresh:
        return [run_child(section, [job])[0] for job in jobs]
    handlers = importlib.import_module(section).HANDLERS
    return [handlers[job["kind"]](job) for job in jobs]


def run_child(section: str, jobs: list[dict[str, Any]], *, timeout: float = 900) -> list[dict[str, Any]]:
    """Run `jobs` in a fresh `python benchmarks/<section>.py` process; return its results, one per job."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(HERE / f"{section}.py"), json.dumps(jobs)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark child {section} failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(RESULT_MARK):])


def child_main(handlers: dict[str, Any]) -> None:
    """The child's entry: run each job with `handlers[job["kind"]](job)` and print the results."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    jobs = json.loads(sys.argv[1])
    print(RESULT_MARK + json.dumps([handlers[job["kind"]](job) for job in jobs]), flush=True)


def interleaved(names: Sequence[str], repeats: int) -> Iterator[tuple[int, str]]:
    """`(repeat, name)` in the order A B C A B C ...: slow drifts of a shared machine hit all alike."""
    for repeat in range(repeats):
        for name in names:
            yield repeat, name


def median(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


def machine() -> dict[str, Any]:
    """The cores, memory and versions the figures were taken with."""
    memory = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024**2, 1)
    versions = {}
    for package in ("tensorflow", "tensorflow-cpu", "keras", "numpy", "h5py"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": memory,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def _cpu_model() -> str | None:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, columns in first-seen order; floats to 3 significant digits."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def disk_bytes(path: str | Path) -> int:
    """Bytes of the file `path`, or of every file under the directory `path`."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
