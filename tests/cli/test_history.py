"""`runs.jsonl`, `tfcheckpointer history`, `train --dry-run` and train's exit statuses, as a scheduler sees them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import ROOT, run_cli
from tfcheckpointer.cli import main
from tfcheckpointer.config import parse_config
from tfcheckpointer.config.schema import run_directory_of
from tfcheckpointer.errors import ConfigError
from tfcheckpointer.integrations.run_history import read_runs

# Batches from a generator: it can fail after `fail_after` batches, or go slowly and
# say when training has begun (`started`), for a signal to arrive mid-training.
JOBS = """\
import time
from pathlib import Path

import numpy as np


def load(fail_after=None, sleep=0.0, missing=False):
    if missing:
        raise FileNotFoundError("no such file: week-48.npz")
    def batches():
        x = np.ones((8, 4), "float32")
        count = 0
        while True:
            if fail_after is not None and count >= fail_after:
                raise RuntimeError("the data source went away")
            count += 1
            Path("started").touch()
            time.sleep(sleep)
            yield x, x[:, :1]

    return {"x": batches(), "steps_per_epoch": 4}
"""


def _job(tmp_path: Path, name: str = "job.yaml", *, data: str = "", epochs: int = 2) -> str:
    (tmp_path / "jobs.py").write_text(JOBS)
    (tmp_path / name).write_text(
        "checkpoint: {directory: run/ckpt, every_n_steps: 2}\n"
        "model: {factory: 'tests.helpers.linear:build_model'}\n"
        f"data: {data or '{factory: tests.helpers.linear:load_data}'}\n"
        f"fit: {{epochs: {epochs}, batch_size: 8, verbose: 0}}\n"
    )
    return name


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("two-runs")
    _job(directory)
    for _ in range(2):
        result = run_cli("train", "job.yaml", cwd=directory)
        assert result.returncode == 0, result.stderr
    return directory


def test_each_run_appends_one_line(two_runs):
    first, second = read_runs(str(two_runs / "run" / "runs.jsonl"))
    # 16 rows in batches of 8, two epochs: 4 steps a run; the second resumes at the first's end.
    assert (first["started_from"], first["end_step"], first["steps_trained"]) == (0, 4, 4)
    assert (second["started_from"], second["end_step"], second["steps_trained"]) == (4, 8, 4)
    assert second["checkpoint"] == "run/ckpt/model.ckpt-8"
    assert first["outcome"] == second["outcome"] == "trained"
    assert first["exit_code"] == 0 and first["error"] is None
    assert set(first["final_metrics"]) == {"loss", "val_loss"}
    assert second["final_metrics"]["loss"] < first["final_metrics"]["loss"]
    assert first["end"] >= first["start"] and first["config"] == str(two_runs / "job.yaml")
    assert (first["exported_version"], first["champion"], first["promoted"]) == (None, None, None)


def test_history_prints_an_aligned_table(two_runs, capsys, monkeypatch):
    monkeypatch.chdir(two_runs)
    assert main(["history", "job.yaml"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "START", "DURATION", "STEPS", "FROM", "LOSS", "VAL_LOSS", "VERSION", "PROMOTED", "OUTCOME", "EXIT",
    ]
    assert [row.split()[2:4] for row in rows] == [["4", "0"], ["4", "4"]]
    assert all(row.split()[-2:] == ["trained", "0"] for row in rows)
    assert len({header.index("OUTCOME"), *(row.index("trained") for row in rows)}) == 1


def test_history_json_is_the_records(two_runs, capsys):
    assert main(["history", str(two_runs / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == read_runs(str(two_runs / "run" / "runs.jsonl"))


def test_history_of_a_directory_without_runs_says_so(tmp_path, capsys):
    assert main(["history", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"No runs recorded in {tmp_path / 'runs.jsonl'} yet.\n"


def test_history_of_a_missing_path_is_a_usage_error(tmp_path, capsys):
    assert main(["history", str(tmp_path / "nope")]) == 2
    assert "nope: no such run directory, history file or job file" in capsys.readouterr().err


def test_a_damaged_line_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"outcome": "trained"}\n{"outcome": "tra\n')
    assert read_runs(str(path)) == [{"outcome": "trained"}]
    assert f"{path}:2 is not a run record; skipped." in caplog.text


def test_a_run_that_fails_in_training_exits_4_and_is_recorded(tmp_path):
    _job(tmp_path, data="{factory: 'jobs:load', kwargs: {fail_after: 6}}", epochs=3)
    result = run_cli("train", "job.yaml", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "RuntimeError: the data source went away" in result.stderr
    (run,) = read_runs(str(tmp_path / "run" / "runs.jsonl"))
    assert run["outcome"] == "failed" and run["exit_code"] == 4
    assert re.match(r"\w+Error: ", run["error"])  # TensorFlow's wrapper of the generator's error
    assert run["started_from"] == 0 and run["end_step"] >= 4
    # The directory's lock was let go: its file is empty, as a clean release leaves it.
    assert (tmp_path / "run" / "ckpt" / ".tfcheckpointer.lock").read_text() == ""


@pytest.mark.parametrize("data", [
    "{factory: 'jobs:load', kwargs: {missing: true}}",
    "{factory: 'jobs:load', kwargs: {nonsense: 1}}",
])
def test_a_data_factory_that_raises_exits_2_with_one_line_and_writes_nothing(tmp_path, data):
    _job(tmp_path, data=data)
    result = run_cli("train", "job.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "tfcheckpointer: error:" in line]
    assert re.search(r"job\.yaml: data\.factory: the factory 'jobs:load' raised "
                     r"(FileNotFoundError: no such file: week-48\.npz|TypeError: .*nonsense)", line)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # no checkpoint, no lock, no runs.jsonl


def test_sigterm_saves_then_exits_5_and_is_recorded(tmp_path):
    # Batches from a generator, whose tf.data thread would hang a normal interpreter exit.
    _job(tmp_path, data="{factory: 'jobs:load', kwargs: {sleep: 0.05}}", epochs=1000)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tfcheckpointer", "train", "job.yaml"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 5, stderr
    (run,) = read_runs(str(tmp_path / "run" / "runs.jsonl"))
    assert run["outcome"] == "stopped by SIGTERM" and run["exit_code"] == 5
    step = run["end_step"]
    assert run["checkpoint"] == f"run/ckpt/model.ckpt-{step}"
    assert (tmp_path / "run" / "ckpt" / f"model.ckpt-{step}.index").exists()
    assert f"tfcheckpointer: stopped by SIGTERM at step {step}" in stderr


def test_dry_run_imports_the_factories_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _job(tmp_path, data="{factory: 'jobs:load'}")
    assert main(["train", "job.yaml", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(
        "job.yaml: OK (dry run): would train tests.helpers.linear:build_model on jobs:load; "
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["job.yaml", "jobs.py"]


def test_dry_run_with_a_missing_factory_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _job(tmp_path, data="{factory: 'jobs:no_such_loader'}")
    assert main(["train", "job.yaml", "--dry-run"]) == 2
    assert "job.yaml: data.factory: module 'jobs' has no attribute 'no_such_loader'" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("checkpoint", "run_directory", "expected"),
    [("runs/a/ckpt", None, "runs/a"), ("ckpt/", None, "."), ("gs://b/a/ckpt", "/tmp/a", "/tmp/a")],
)
def test_the_run_directory_is_the_key_else_the_checkpoint_directory_s_parent(
    checkpoint, run_directory, expected
):
    config = parse_config({"checkpoint": {"directory": checkpoint, "every_n_steps": 1}, "run_directory": run_directory})
    assert run_directory_of(config) == expected


def test_a_remote_run_directory_is_refused():
    with pytest.raises(ConfigError, match=r"run_directory: expected a local directory, got 'gs://b/a'"):
        parse_config({"checkpoint": {"directory": "ckpt", "every_n_steps": 1}, "run_directory": "gs://b/a"})
