"""The champion/challenger gate (`export.promote_if`) through real runs, as a scheduler drives them."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest

from tests.helpers import run_in_tf1_session, weekly
from tfcheckpointer.cli import main
from tfcheckpointer.export import versions
from tfcheckpointer.integrations.keras_callback import CheckpointCallback
from tfcheckpointer.integrations.run_history import read_runs

# Each run starts afresh (`restore: none`; the last run's checkpoints are set aside), so
# where a new run would otherwise start from does not matter; the worse run comes last.
JOB = """\
seed: 0
checkpoint: {directory: ckpt, every_n_steps: 1000, restore: none, on_existing: set_aside}
freeze: {output: model.pb}
export:
  directory: serving
  keep: 1
  promote_if: {monitor: val_loss}
model: {factory: 'tests.helpers.weekly:build_model'}
data: {factory: 'tests.helpers.weekly:load_week', kwargs: {week: 1}}
fit: {epochs: 6, batch_size: 32, verbose: 0}
"""

RUNS = [
    # week 1: one short epoch, a weak first model; week 2: a good one; week 3: shuffled labels.
    ["--set", "data.kwargs.week=1", "--set", "fit.epochs=1", "--set", "fit.batch_size=128"],
    ["--set", "data.kwargs.week=2"],
    ["--set", "data.kwargs.week=3", "--set", "data.kwargs.shuffled=true"],
]


@pytest.fixture(scope="module")
def three_weeks(tmp_path_factory) -> dict:
    """Three `tfcheckpointer train` runs on weeks 1, 2 and 3; their exit codes and stderr."""
    directory = tmp_path_factory.mktemp("weekly")
    (directory / "job.yaml").write_text(JOB)
    previous = os.getcwd()
    os.chdir(directory)
    codes, errors = [], []
    capture = _StderrLines()
    logging.getLogger("tfcheckpointer").addHandler(capture)
    try:
        for arguments in RUNS:
            codes.append(main(["train", "job.yaml", "--quiet", *arguments]))
            errors.append(capture.take())
    finally:
        logging.getLogger("tfcheckpointer").removeHandler(capture)
        os.chdir(previous)
    return {"directory": directory, "codes": codes, "logs": errors}


class _StderrLines(logging.Handler):
    """The `tfcheckpointer` log records of a run, as the CLI prints them."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


def manifest(directory: Path, version: int) -> dict:
    return json.loads((directory / "serving" / str(version) / "manifest.json").read_text())


def test_the_worse_run_exits_3_and_latest_stays_on_the_champion(three_weeks):
    serving = three_weeks["directory"] / "serving"
    assert three_weeks["codes"] == [0, 0, 3]
    assert (serving / "LATEST").read_text() == "2\n"
    assert [(p["from"], p["to"]) for p in versions.read_promotions(str(serving))] == [(None, 1), (1, 2)]
    # keep: 1 keeps the newest version and, beyond it, the promoted one; version 1 is gone.
    assert versions.list_versions(str(serving)) == [2, 3]


def test_the_job_says_so_in_one_line_with_both_figures(three_weeks):
    champion = manifest(three_weeks["directory"], 3)["champion"]
    lines = [line for line in three_weeks["logs"][2] if "promoted" in line]
    assert lines == [
        f"WARNING Version 3 not promoted: val_loss {champion['challenger']:.4g} vs champion v2 "
        f"{champion['champion']:.4g} on this run's validation data: worse by "
        f"{champion['challenger'] - champion['champion']:.4g}"
    ]


def test_every_decision_is_in_its_manifest_with_both_figures(three_weeks):
    directory = three_weeks["directory"]
    second, third = manifest(directory, 2), manifest(directory, 3)
    thresholds = {"min_delta": 0.0, "min_relative_delta": 0.0, "at_most": None, "at_least": None}
    assert third["champion"] == {
        "decision": "not promoted",
        "reason": third["champion"]["reason"],
        "monitor": "val_loss",
        "mode": "min",
        "challenger": third["evaluation"]["figures"]["loss"],
        "champion": third["champion"]["champion"],
        "champion_version": 2,
        "comparison": "same data",
        "thresholds": thresholds,
    }
    assert third["champion"]["challenger"] > third["champion"]["champion"]
    assert third["evaluation"]["examples"] == 64
    assert set(third["evaluation"]["figures"]) == {"loss", "accuracy"}
    assert third["data_fingerprint"] == "week-3-shuffled"
    assert (second["champion"]["decision"], second["champion"]["comparison"]) == ("promoted", "same data")
    assert second["champion"]["challenger"] < second["champion"]["champion"]
    assert second["champion"]["reason"].startswith("val_loss ")
    assert second["champion"]["reason"].endswith(" vs champion v1 "
        f"{second['champion']['champion']:.4g} on this run's validation data")


def test_both_figures_are_this_run_s_data_s(three_weeks):
    """Recomputed apart from the package: each model.pb in a TF1 session, cross-entropy in numpy."""
    directory = three_weeks["directory"]
    x, labels = weekly.rows(3, 64, validation=True)
    champion = manifest(directory, 3)["champion"]
    for version, figure in ((2, champion["champion"]), (3, champion["challenger"])):
        signature = manifest(directory, version)["signature"]
        (probabilities,) = run_in_tf1_session(
            directory / "serving" / str(version) / "model.pb",
            {signature["inputs"][0]["name"]: x}, [signature["outputs"][0]["name"]],
        )
        assert figure == pytest.approx(weekly.cross_entropy(probabilities, labels), rel=1e-5)


def test_the_run_history_has_each_run_s_decision(three_weeks, capsys):
    runs = read_runs(str(three_weeks["directory"] / "runs.jsonl"))
    assert [(r["exported_version"], r["promoted"], r["exit_code"], r["outcome"]) for r in runs] == [
        (1, True, 0, "trained"), (2, True, 0, "trained"), (3, False, 3, "trained"),
    ]
    assert [r["champion"]["comparison"] for r in runs] == ["no champion", "same data", "same data"]
    assert runs[2]["champion"] == manifest(three_weeks["directory"], 3)["champion"]
    assert main(["history", str(three_weeks["directory"])]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[-4:] == ["VERSION", "PROMOTED", "OUTCOME", "EXIT"]
    assert [row.split()[-4:] for row in rows] == [
        ["1", "yes", "trained", "0"], ["2", "yes", "trained", "0"], ["3", "no", "trained", "3"],
    ]


def _train(tmp_path: Path, run: int, *, features: int, **promote_if):
    data = weekly.load_week(run, features=features)
    callback = CheckpointCallback(
        str(tmp_path / f"ckpt-{run}"), every_n_steps=1000,
        freeze={"output": str(tmp_path / f"model-{run}.pb")},
        export={"directory": str(tmp_path / "serving"),
                "promote_if": {"monitor": "val_loss", **promote_if}},
        validation_data=data["validation_data"],
    )
    model = weekly.build_model(features)
    model.fit(data["x"], data["y"], epochs=2, batch_size=32, verbose=0, callbacks=[callback],
              validation_data=data["validation_data"])
    return callback


def test_a_champion_that_does_not_fit_the_data_is_compared_by_its_recorded_figure(tmp_path, caplog):
    first = _train(tmp_path, 1, features=4).exported
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        second = _train(tmp_path, 2, features=5).exported
    champion = second.manifest["champion"]
    assert champion["comparison"] == "recorded"
    assert champion["champion"] == first.manifest["evaluation"]["figures"]["loss"]
    assert champion["champion_version"] == 1
    assert "has shape (64, 5); expected (None, 4)" in champion["champion_problem"]
    assert "as recorded in its manifest" in champion["reason"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "tfcheckpointer"
                and r.levelno == logging.WARNING and r.getMessage().startswith("Champion")]
    assert len(warnings) == 1
    assert warnings[0].startswith("Champion v1 cannot be evaluated on this run's validation data (")
    assert warnings[0].endswith(f"comparing with its recorded val_loss {champion['champion']:.4g} instead")


def test_the_challenger_s_figures_are_what_evaluate_gives_the_trained_model(tmp_path):
    callback = _train(tmp_path, 1, features=4)
    x, y = weekly.load_week(1)["validation_data"]
    expected = callback.model.evaluate(x, y, verbose=0, return_dict=True)
    figures = callback.exported.manifest["evaluation"]["figures"]
    assert figures == pytest.approx(expected, rel=1e-6)


def test_a_bound_keeps_even_the_first_version_out(tmp_path):
    exported = _train(tmp_path, 1, features=4, at_most=0.01).exported
    assert not exported.promoted
    assert exported.manifest["champion"]["reason"] == (
        f"val_loss {exported.manifest['champion']['challenger']:.4g} is above at_most 0.01"
    )
    assert not (tmp_path / "serving" / "LATEST").exists()


def test_validation_data_may_be_a_dataset(tmp_path):
    import tensorflow as tf

    data = weekly.load_week(1)
    arrays = CheckpointCallback(
        str(tmp_path / "a"), every_n_steps=1000, freeze={"output": str(tmp_path / "a.pb")},
        export={"directory": str(tmp_path / "a-serving"), "promote_if": {"monitor": "accuracy"}},
        validation_data=data["validation_data"],
    )
    dataset = CheckpointCallback(
        str(tmp_path / "d"), every_n_steps=1000, freeze={"output": str(tmp_path / "d.pb")},
        export={"directory": str(tmp_path / "d-serving"), "promote_if": {"monitor": "accuracy"}},
        validation_data=tf.data.Dataset.from_tensor_slices(data["validation_data"]).batch(10),
    )
    model = weekly.build_model()
    model.fit(data["x"], data["y"], epochs=1, verbose=0, callbacks=[arrays, dataset])
    figures = [c.exported.manifest["evaluation"] for c in (arrays, dataset)]
    assert figures[0]["examples"] == figures[1]["examples"] == 64
    assert figures[1]["figures"] == pytest.approx(figures[0]["figures"], rel=1e-6)
    assert arrays.exported.manifest["champion"]["mode"] == "max"


def _tree(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*")) if path.is_file()
    }


@pytest.fixture
def served(tmp_path, monkeypatch) -> Path:
    """A job directory whose export directory already serves a version."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.yaml").write_text(JOB)
    version = tmp_path / "serving" / "1"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text("{}\n")
    versions.move_latest(str(tmp_path / "serving"), 1, by="manual", reason="set up")
    return tmp_path


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("export.promote_if.min_detla=0.1",
         r"export.promote_if.min_detla: unknown key 'min_detla' HINT: did you mean 'min_delta'\?"),
        ("export.promote_if.min_delta=-1",
         r"export.promote_if.min_delta: expected a number >= 0, got -1"),
        ("export.promote_if.monitor=val_f1",
         r"export.promote_if.mode: cannot tell from the name 'val_f1' whether a lower or a higher "
         r"value is better HINT: add mode: min or mode: max"),
        ("export.promote_if={monitor: val_loss, at_most: 0.1, at_least: 0.5}",
         r"export.promote_if.at_least: at_least 0.5 is above at_most 0.1, so no model could be "
         r"promoted"),
        ("export.promote_if.monitor=val_auc",
         r"export.promote_if.monitor: 'val_auc' is not a figure of the compiled model; it gives "
         r"loss, accuracy HINT: name the compiled loss"),
        ("data.kwargs.validation=false",
         r"export.promote_if: needs this run's validation data to evaluate the new model and the "
         r"champion on, and none was given HINT: pass validation_data="),
        # What a scheduled job gets wrong besides the gate: a bad --set path, a missing
        # factory, a factory that raises, an unset ${ENV} reference.
        ("checkpoint.evry_n_steps=5", r"checkpoint.evry_n_steps: unknown key 'evry_n_steps'"),
        ("model.factory=tests.helpers.nowhere:build_model", r"model.factory: .*nowhere"),
        ("data.kwargs.colour=1",
         r"data.factory: the factory 'tests.helpers.weekly:load_week' raised TypeError: .*colour"),
        ("export.directory=${TFC_UNSET_VARIABLE}/serving", r"export.directory: .*TFC_UNSET_VARIABLE"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_touches_no_export(served, setting, message, capsys):
    before = _tree(served / "serving")
    assert main(["train", "job.yaml", "--quiet", "--set", setting]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert line.startswith("tfcheckpointer: error: job.yaml")
    assert re.search(message, line), line
    assert _tree(served / "serving") == before
    assert not (served / "ckpt").exists() or not os.listdir(served / "ckpt")
    assert not (served / "runs.jsonl").exists()


def test_without_a_gate_nothing_is_evaluated(tmp_path):
    callback = CheckpointCallback(
        str(tmp_path / "c"), every_n_steps=1000, freeze={"output": str(tmp_path / "m.pb")},
        export={"directory": str(tmp_path / "serving")},
    )
    data = weekly.load_week(1)
    weekly.build_model().fit(data["x"], data["y"], epochs=1, verbose=0, callbacks=[callback])
    assert callback.exported.manifest["evaluation"] is None
    assert callback.exported.manifest["champion"] == {
        "decision": "promoted", "reason": "no promote_if gate configured",
    }


def test_a_repeating_validation_dataset_is_scored_on_fit_s_validation_steps(tmp_path, monkeypatch):
    """Keras's idiom for a validation set that repeats is `validation_steps`; the gate reads as many."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.yaml").write_text(JOB)
    assert main([
        "train", "job.yaml", "--quiet", "--set", "data.factory=tests.helpers.weekly:load_week_repeating",
        "--set", "fit.validation_steps=2", "--set", "fit.epochs=1",
    ]) == 0
    assert manifest(tmp_path, 1)["evaluation"]["examples"] == 32


def test_both_models_score_the_same_validation_steps_batches_of_a_reshuffling_dataset(
    tmp_path, monkeypatch
):
    """Two runs that train the same model: on the same rows, the champion ties the challenger."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.yaml").write_text(JOB)
    arguments = [
        "train", "job.yaml", "--quiet", "--set", "data.factory=tests.helpers.weekly:load_week_repeating",
        "--set", "data.kwargs.shuffled=true", "--set", "fit.validation_steps=2", "--set", "fit.epochs=1",
    ]
    assert main(arguments) == 0
    assert main(arguments) == 3
    champion = manifest(tmp_path, 2)["champion"]
    assert champion["challenger"] == champion["champion"]


def test_a_latest_that_names_no_version_is_refused_before_training(served, capsys):
    (served / "serving" / "LATEST").write_text("two\n")
    before = _tree(served / "serving")
    assert main(["train", "job.yaml", "--quiet"]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert re.search(r"LATEST holds 'two', not a version number\. HINT: set it with", line), line
    assert _tree(served / "serving") == before
    assert not (served / "ckpt").exists() or not os.listdir(served / "ckpt")


def test_validation_inputs_the_frozen_graph_would_refuse_are_refused_before_training(tmp_path):
    """The live model casts float token ids for its int input; the frozen graph is fed them as they are."""
    import keras
    import numpy as np

    from tfcheckpointer.errors import ConfigError

    model = keras.Sequential([
        keras.Input((3,), dtype="int32"), keras.layers.Embedding(5, 2), keras.layers.Flatten(),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.zeros((4, 3), "int32"), np.zeros(4, "int64")
    callback = CheckpointCallback(
        str(tmp_path / "ckpt"), every_n_steps=1000, freeze={"output": str(tmp_path / "m.pb")},
        export={"directory": str(tmp_path / "serving"), "promote_if": {"monitor": "val_loss"}},
        validation_data=(x.astype("float32"), y),
    )
    with pytest.raises(ConfigError, match=(
        r"export.promote_if: cannot score the model on its validation data: Probe array for input "
        r"'\w+' \(validation data\) has dtype float32; expected int32"
    )):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert not (tmp_path / "ckpt").exists() or not os.listdir(tmp_path / "ckpt")


def test_a_champion_scored_on_other_rows_than_the_challenger_is_not_a_same_data_comparison(tmp_path):
    """A validation dataset that gives fewer rows on a later pass (a one-shot generator) is caught."""
    import tensorflow as tf

    first = _train(tmp_path, 1, features=4).exported
    x, y = weekly.load_week(2)["validation_data"]
    batches = iter([(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)])
    one_shot = tf.data.Dataset.from_generator(
        lambda: batches,
        output_signature=(tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None,), tf.int64)),
    )
    data = weekly.load_week(2)
    callback = CheckpointCallback(
        str(tmp_path / "ckpt-2"), every_n_steps=1000, freeze={"output": str(tmp_path / "model-2.pb")},
        export={"directory": str(tmp_path / "serving"), "promote_if": {"monitor": "val_loss"}},
        validation_data=one_shot,
    )
    weekly.build_model().fit(data["x"], data["y"], epochs=1, verbose=0, callbacks=[callback])
    champion = callback.exported.manifest["champion"]
    assert champion["comparison"] == "recorded"
    assert champion["champion"] == first.manifest["evaluation"]["figures"]["loss"]
    # The new model got what the train-begin check and tf.data's prefetching left.
    assert re.fullmatch(
        r"this run's validation data gave it 0 rows and the new model \d+: not the same data",
        champion["champion_problem"],
    )


def test_a_new_model_scored_on_no_rows_is_not_published(tmp_path):
    """A one-shot dataset that the train-begin check used up gives the new model nothing: no figure of 0."""
    import tensorflow as tf

    from tfcheckpointer.errors import ExportError

    x, y = weekly.load_week(1)["validation_data"]
    batches = iter([(x, y)])
    one_shot = tf.data.Dataset.from_generator(
        lambda: batches,
        output_signature=(tf.TensorSpec((None, 4), tf.float32), tf.TensorSpec((None,), tf.int64)),
    )
    callback = CheckpointCallback(
        str(tmp_path / "ckpt"), every_n_steps=1000, freeze={"output": str(tmp_path / "model.pb")},
        export={"directory": str(tmp_path / "serving"), "promote_if": {"monitor": "val_loss"}},
        validation_data=one_shot,
    )
    with pytest.raises(ExportError, match=(
        r"Cannot score the new model .*model.pb on this run's validation data: it gave no rows; "
        r"no version was published"
    )):
        weekly.build_model().fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert versions.list_versions(str(tmp_path / "serving")) == []


def test_validation_steps_batches_of_different_widths_are_kept_as_they_are():
    """`padded_batch` gives each batch its own width; the gate reads the same batches on each pass."""
    import tensorflow as tf
    import yaml

    from tfcheckpointer.config.loading import parse_config
    from tfcheckpointer.integrations.job import _validation_data
    from tfcheckpointer.integrations.validation import as_validation_data

    rows = tf.data.Dataset.range(1, 9).map(lambda n: (tf.range(n), n))
    dataset = rows.shuffle(8).padded_batch(2).repeat()
    config = parse_config({**yaml.safe_load(JOB), "fit": {"validation_steps": 3}})
    data = as_validation_data(_validation_data(dataset, config), source="job.yaml")
    first, second = list(data.batches()), list(data.batches())
    assert [x.shape[0] for x, _, _ in first] == [2, 2, 2]
    assert [x.tolist() for x, _, _ in first] == [x.tolist() for x, _, _ in second]
