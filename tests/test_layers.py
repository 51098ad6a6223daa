"""The package's layers, checked by import-linter against the contracts in setup.cfg."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with our contracts over the `tfcheckpointer` package in `package_parent`."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), str(ROOT / "setup.cfg"), "--no-cache"],
        cwd=package_parent, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
    )


def test_every_import_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


def test_the_contracts_catch_a_forbidden_import(tmp_path):
    # The same contracts over a copy of the package in which the checkpoint layer imports Keras.
    copy = tmp_path / "tfcheckpointer"
    subprocess.run(["cp", "-r", str(ROOT / "tfcheckpointer"), str(copy)], check=True)
    policy = copy / "checkpoint" / "policy.py"
    policy.write_text(policy.read_text() + "\nimport keras  # noqa: E402\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "The checkpoint layer imports no Keras BROKEN" in result.stdout
    assert "tfcheckpointer.checkpoint.policy -> keras" in result.stdout
