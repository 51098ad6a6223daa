"""`configs/digits_weekly.yaml`, the shipped retraining job, run week after week as a scheduler would."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import ROOT, run_cli
from tfcheckpointer.cli import main
from tfcheckpointer.examples.digits import load_week

CONFIG = str(ROOT / "configs" / "digits_weekly.yaml")


def train_week(week, tmp_path):
    return run_cli(
        "train", CONFIG, "--quiet", "--set", f"data.kwargs.week={week}", "--set", "fit.epochs=1",
        cwd=tmp_path,
    )


def test_each_week_is_its_own_slice_with_its_own_validation_rows():
    first, second, fifth = (load_week(week=w) for w in (1, 2, 5))
    assert (len(first["x"]), len(first["validation_data"][0])) == (360, 90)
    assert not set(map(bytes, first["x"])) & set(map(bytes, second["x"]))
    assert not set(map(bytes, first["x"])) & set(map(bytes, first["validation_data"][0]))
    assert first["fingerprint"] == "digits week 1: slice 1 of 4, seed 0"
    assert fifth["fingerprint"] == "digits week 5: slice 1 of 4, seed 0"
    assert (fifth["x"] == first["x"]).all()


@pytest.mark.slow
def test_two_weeks_as_a_scheduler_runs_them_then_a_rollback(tmp_path, monkeypatch, capsys):
    serving = tmp_path / "serving" / "digits"
    for week in (1, 2):
        result = train_week(week, tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"Exported version: serving/digits/{week}\n" in result.stdout
        manifest = json.loads((serving / str(week) / "manifest.json").read_text())
        assert manifest["data_fingerprint"] == f"digits week {week}: slice {week} of 4, seed 0"
        assert manifest["step"] == 12 * week
        assert manifest["checkpoint_copy"]["prefix"] == f"checkpoint/model.ckpt-{12 * week}"
    # Week 1's version was promoted, so week 2 resumed from its checkpoint.
    assert "Restored checkpoint step=12 path=runs/digits_weekly/checkpoints/model.ckpt-12" in result.stderr
    runs = [json.loads(line) for line in (tmp_path / "runs" / "digits_weekly" / "runs.jsonl").open()]
    assert [(r["started_from"], r["started_from_version"], r["exported_version"]) for r in runs] == [
        (0, None, 1), (12, None, 2),
    ]
    monkeypatch.chdir(tmp_path)
    assert main(["history", "runs/digits_weekly"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # the heading and two runs
    assert main(["promote", CONFIG, "--version", "1", "--reason", "week 2 misreads sevens"]) == 0
    assert capsys.readouterr().out == "serving/digits: LATEST 2 -> 1\n"
