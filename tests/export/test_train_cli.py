"""`export:` through `tfcheckpointer train` and `promote` with a job file, as a scheduler runs them."""

from __future__ import annotations

import json

from tests.cli.test_cli import run_cli

MY_FACTORIES = """\
import keras
import numpy as np


def build():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def load(week):
    x = np.full((16, 3), week, "float32")
    return {"x": x, "y": x[:, :1], "fingerprint": f"week-{week}"}
"""

JOB = """\
checkpoint: {directory: ckpt, every_n_steps: 1, restore: none, on_existing: set_aside}
freeze: {output: m.pb}
export: {directory: serving, keep: 2}
model: {factory: 'my_factories:build'}
data: {factory: 'my_factories:load', kwargs: {week: 1}}
fit: {epochs: 1, batch_size: 8}
"""


def test_train_exports_a_version_and_promote_takes_the_job_file(tmp_path):
    (tmp_path / "my_factories.py").write_text(MY_FACTORIES)
    (tmp_path / "job.yaml").write_text(JOB)
    result = run_cli("train", "job.yaml", "--quiet", "--set", "data.kwargs.week=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Exported version: serving/1\n" in result.stdout
    manifest = json.loads((tmp_path / "serving" / "1" / "manifest.json").read_text())
    assert manifest["data_fingerprint"] == "week-2"
    assert manifest["checkpoint"] == "ckpt/model.ckpt-2"
    assert (tmp_path / "serving" / "LATEST").read_text() == "1\n"
    (run,) = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert (run["exported_version"], run["promoted"]) == (1, True)
    assert run["champion"]["reason"] == "no promote_if gate configured"

    result = run_cli("promote", "job.yaml", "--version", "3", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "tfcheckpointer: error: Version 3 is not in serving; it holds versions 1. LATEST is unchanged.\n"
    )
    result = run_cli("promote", "job.yaml", "--version", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "serving: LATEST 1 -> 1\n"
