"""`benchmarks/freeze.py --quick` still runs (its figures are read by people, not asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
