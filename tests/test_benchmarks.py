"""The benchmark scripts still run (tiny sizes; their figures are read by people, not asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_checkpoint_stall_benchmark_runs_and_prints_its_ratios():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "checkpoint_stall.py"), "--mb", "1", "--saves", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    for name in ("tfcheckpointer sync", "tfcheckpointer sync, weights only", "tfcheckpointer async"):
        assert f"ratio {name} / keras: " in result.stdout
    assert "write throughput: tfcheckpointer " in result.stdout
