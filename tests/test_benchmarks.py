"""The benchmark suite still runs (tiny sizes; its figures are read by people, not asserted)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ["save", "throughput", "resume", "freeze", "inference"]
"""Every section, in the order `run.py` runs them."""


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_quick_suite_writes_every_section_and_row(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert {"cores", "memory_gib", "tensorflow", "keras"} <= set(report["machine"])
    assert list(report["sections"]) == SECTIONS
    rows = {name: section["rows"] for name, section in report["sections"].items()}
    assert [row["saver"] for row in rows["save"]] == [
        "no checkpointing (the baseline)",
        "Keras ModelCheckpoint(save_weights_only=True), .weights.h5",
        "Keras ModelCheckpoint, .keras",
        "Keras BackupAndRestore",
        "tf.train.CheckpointManager",
        "tf.train.CheckpointManager, async checkpoint option",
        "bare tf.compat.v1.train.Saver",
        "tfcheckpointer sync, full state",
        "tfcheckpointer sync, full state, spare_data_file: false",
        "tfcheckpointer async, full state",
        "tfcheckpointer sync, weights only",
    ]
    # Every saver wrote something, and ours wrote the optimizer state too.
    written = {row["saver"]: row["MB per save"] for row in rows["save"]}
    assert all(mb > 0 for name, mb in written.items() if name != "no checkpointing (the baseline)")
    assert written["tfcheckpointer sync, full state"] > 2 * written["tfcheckpointer sync, weights only"]
    assert all(row["hook stall ms (median)"] > 0 for row in rows["save"][1:])
    writers = [row["writer"].split()[0] for row in rows["throughput"]]
    assert writers == ["plain", "bare", "tfcheckpointer", "tfcheckpointer"]
    assert len(rows["resume"]) == 3 and all(row["median s"] > 0 for row in rows["resume"])
    assert [row["batch"] for row in rows["inference"]] == [1, 64]
    assert [row["method"] for row in rows["freeze"]] == ["stock", "stream", "stream+verify"]
    assert all(row["seconds"] > 0 and row["ratio_vs_stock"] for row in rows["freeze"][1:])
    assert f"## {report['sections']['save']['title']}" in result.stdout
    assert "| saver | MB per save |" in result.stdout


@pytest.mark.slow
def test_a_section_runs_its_jobs_in_a_fresh_process():
    spec = importlib.util.spec_from_file_location("benchmarks_common", ROOT / "benchmarks" / "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    (result,) = common.run_child(
        "save", [{"kind": "fit", "competitor": "ours_sync", "model": common.QUICK_MODEL}], timeout=300
    )
    every, steps = common.QUICK_MODEL["every"], common.QUICK_MODEL["steps"]
    assert result["competitor"] == "ours_sync"
    assert len(result["save_stalls_s"]) == steps // every
    assert result["bytes"] > 0


def test_an_unknown_section_is_refused_before_anything_runs():
    result = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--only", "save,speed"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=_env(),
    )
    assert result.returncode == 2
    assert "unknown section(s) speed; expected some of save, throughput, resume, freeze, inference" in result.stderr


def test_the_page_reuse_script_prints_a_row_per_order(tmp_path):
    result = subprocess.run(
        [sys.executable, "benchmarks/page_reuse.py", "--mb", "1", "--gap", "0", "--saves", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**_env(), "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "order" not in line]
    assert len(rows) == 5 and all(float(row.split("|")[3]) > 0 for row in rows)  # GB/s
    assert list(tmp_path.iterdir()) == []  # every order cleans up after itself


def _benchmark_module(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_a_save_is_charged_its_own_cost_when_the_fit_changes_speed_midway():
    """This VM's fits run at one of two speeds and can switch mid-fit: steps of 0.05 s,
    then 0.08 s. Each save adds 0.3 s to its step; each is charged that, not the shift."""
    save = _benchmark_module("save")
    every, steps = 50, 400
    step = [0.05 if i < 185 else 0.08 for i in range(steps)]  # between two saves' windows
    for saved in range(every - 1, steps, every):  # batch `saved` (0-based) ends with a save
        step[saved] += 0.3
    ends = [0.0]
    for seconds in step:
        ends.append(ends[-1] + seconds)
    costs = save._window_seconds(ends[1:], every)
    assert len(costs) == 7
    assert all(abs(cost - 0.3) < 1e-9 for cost in costs), costs
