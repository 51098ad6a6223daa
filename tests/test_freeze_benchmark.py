"""`benchmarks/freeze.py --quick` still runs (its figures are read by people, not asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_freeze_benchmark_quick_prints_a_row_per_method():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "freeze.py"), "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| section | method | weights_mb |")
    methods = [line.split(" | ")[1] for line in lines[2:]]
    assert methods == ["stock", "stream", "stream+verify"]
    assert all("ratio_vs_stock" in lines[0] and line.count("|") == lines[0].count("|") for line in lines[2:])


def test_peak_memory_is_the_childs_own_after_a_reset():
    # A child's ru_maxrss starts at its parent's RSS (kept over exec) and clear_refs does not
    # reset it: a child of a large process would report the parent's size as its peak.
    held = np.ones(300 << 20, np.uint8)  # make this (parent) process large
    code = (
        "import sys; sys.path.insert(0, 'benchmarks'); import freeze; "
        "freeze._reset_peak(); print(freeze._peak_bytes() - freeze._rss_bytes())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    del held
    assert int(result.stdout) < 50 << 20
