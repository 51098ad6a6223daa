"""The freeze benchmark measures each child's own peak memory (`tests/test_benchmarks.py` runs it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


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
