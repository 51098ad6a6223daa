"""`checkpoint.keep_best`: epoch-end scores in `scores.json`, kept by retention, found by `best`.

The test plays the training loop with plain `tf.Variable`s, calling the
manager's `on_step` and `on_epoch_end` as the Keras callback does.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import steps_on_disk
from tfcheckpointer.checkpoint.manager import CheckpointManager
from tfcheckpointer.checkpoint.scores import checkpoint_score, read_scores
from tfcheckpointer.config import CheckpointConfig, KeepBestConfig
from tfcheckpointer.errors import CheckpointError
from tfcheckpointer.graph.locate import resolve_checkpoint

STEPS_PER_EPOCH = 4
LOSS_MAX = KeepBestConfig(monitor="loss", mode="max", k=1)


@pytest.fixture
def managers():
    made: list[CheckpointManager] = []

    def make(directory, **options) -> CheckpointManager:
        options = {"every_n_steps": 2, "max_to_keep": 1, "keep_best": LOSS_MAX, **options}
        manager = CheckpointManager(CheckpointConfig(directory=str(directory), save_on_signals=(), **options))
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()


def train(manager, variables, epochs, *, losses, first_epoch=1):
    """Run `epochs` epochs of STEPS_PER_EPOCH steps; epoch e ends with `losses[e - 1]`."""
    for epoch in range(first_epoch, first_epoch + epochs):
        for step in range((epoch - 1) * STEPS_PER_EPOCH + 1, epoch * STEPS_PER_EPOCH + 1):
            variables["w"].assign(np.full(3, float(step), dtype="float32"))
            variables["global_step"].assign(step)
            manager.on_step(step)
        manager.on_epoch_end(epoch, {"loss": losses[epoch - 1], "lr": np.float32(0.01)})


def make_variables():
    return {"w": tf.Variable(np.zeros(3, dtype="float32")), "global_step": tf.Variable(0, dtype=tf.int64)}


def test_the_best_checkpoint_outlives_max_to_keep(tmp_path, managers):
    manager = managers(tmp_path)
    variables = make_variables()
    manager.start(variables, step=0)
    train(manager, variables, 3, losses=[0.9, 0.5, 0.7])
    # Epoch 1's checkpoint (step 4) scored best; step 2 was gone before any epoch ended.
    assert steps_on_disk(tmp_path) == [4, 12]
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores == {
        "monitor": "loss", "mode": "max",
        "checkpoints": {
            "model.ckpt-4": {"epoch": 1, "metrics": {"loss": 0.9, "lr": pytest.approx(0.01)}},
            "model.ckpt-12": {"epoch": 3, "metrics": {"loss": 0.7, "lr": pytest.approx(0.01)}},
        },
    }


def test_without_keep_best_nothing_is_scored(tmp_path, managers):
    manager = managers(tmp_path, keep_best=None)
    variables = make_variables()
    manager.start(variables, step=0)
    train(manager, variables, 2, losses=[0.9, 0.5])
    assert steps_on_disk(tmp_path) == [8]
    assert not (tmp_path / "scores.json").exists()


def test_a_restarted_manager_keeps_the_recorded_best(tmp_path, managers):
    first = managers(tmp_path)
    variables = make_variables()
    first.start(variables, step=0)
    train(first, variables, 2, losses=[0.9, 0.5])
    first.close()
    second = managers(tmp_path)
    variables = make_variables()
    second.start(variables, step=0)
    assert second.restore().step == 8
    train(second, variables, 2, losses=[0.9, 0.5, 0.6, 0.8], first_epoch=3)
    assert steps_on_disk(tmp_path) == [4, 16]


def test_a_better_epoch_takes_over_and_the_old_best_goes_by_recency(tmp_path, managers):
    manager = managers(tmp_path)
    variables = make_variables()
    manager.start(variables, step=0)
    train(manager, variables, 3, losses=[0.5, 0.9, 0.1])
    assert steps_on_disk(tmp_path) == [8, 12]
    assert list(read_scores(str(tmp_path)).checkpoints) == ["model.ckpt-8", "model.ckpt-12"]


def test_a_background_save_is_scored_by_the_epoch_end_after_it(tmp_path, managers):
    manager = managers(tmp_path, async_save=True, max_to_keep=None)
    variables = make_variables()
    manager.start(variables, step=0)
    train(manager, variables, 1, losses=[0.9])
    assert read_scores(str(tmp_path)).value("model.ckpt-4", "loss") == 0.9
    assert read_scores(str(tmp_path)).value("model.ckpt-2", "loss") == 0.9


def test_a_missing_monitor_warns_once_and_scores_nothing(tmp_path, managers, caplog):
    manager = managers(tmp_path, keep_best=KeepBestConfig(monitor="val_loss", mode="min"))
    variables = make_variables()
    manager.start(variables, step=0)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        train(manager, variables, 2, losses=[0.9, 0.5])
    warnings = [r.getMessage() for r in caplog.records if "keep_best" in r.getMessage()]
    assert warnings == [
        "checkpoint.keep_best.monitor 'val_loss' is not among the metrics of epoch 1 (loss, lr), so "
        "its checkpoints have no score and are kept by recency only. HINT: val_ metrics need "
        "validation data (fit's validation_data or validation_split); or monitor one of the "
        "metrics above."
    ]
    assert steps_on_disk(tmp_path) == [8]
    assert read_scores(str(tmp_path)).value("model.ckpt-8", "val_loss") is None


def test_a_step_saved_again_loses_its_old_score(tmp_path, managers):
    manager = managers(tmp_path, max_to_keep=None)
    variables = make_variables()
    manager.start(variables, step=0)
    train(manager, variables, 1, losses=[0.9])
    manager.close()
    again = managers(tmp_path, restore="none", on_existing="keep", max_to_keep=None)
    again.start(make_variables(), step=0)
    again.restore()
    again.on_step(2)
    assert list(read_scores(str(tmp_path)).checkpoints) == ["model.ckpt-4"]


def test_checkpoints_set_aside_take_their_scores_along(tmp_path, managers):
    manager = managers(tmp_path)
    variables = make_variables()
    manager.start(variables, step=0)
    train(manager, variables, 1, losses=[0.9])
    manager.close()
    fresh = managers(tmp_path, restore="none", on_existing="set_aside")
    fresh.start(make_variables(), step=0)
    fresh.restore()
    (aside,) = tmp_path.glob("set-aside-*")
    assert read_scores(str(aside)).value("model.ckpt-4", "loss") == 0.9
    assert not (tmp_path / "scores.json").exists()


def test_a_damaged_scores_file_is_ignored_with_a_warning(tmp_path, managers, caplog):
    (tmp_path / "scores.json").write_text("{not json")
    manager = managers(tmp_path)
    variables = make_variables()
    manager.start(variables, step=0)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        train(manager, variables, 2, losses=[0.9, 0.5])
    assert f"Ignoring {tmp_path}/scores.json" in caplog.text
    assert steps_on_disk(tmp_path) == [4, 8]


# --- `best` and the sidecar's score ---------------------------------------------------------------


@pytest.fixture
def trained(tmp_path, managers):
    """A directory with checkpoints 4 (loss 0.9, epoch 1), 8 (0.5) and 12 (0.7, epoch 3), all scored."""
    manager = managers(tmp_path, max_to_keep=None, every_n_steps=4)
    variables = make_variables()
    manager.start(variables, step=0)
    train(manager, variables, 3, losses=[0.9, 0.5, 0.7])
    manager.close()
    return tmp_path


def test_best_follows_the_recorded_monitor(trained):
    assert resolve_checkpoint("best", directory=str(trained)) == f"{trained}/model.ckpt-4"
    assert resolve_checkpoint(f"best:{trained}") == f"{trained}/model.ckpt-4"


def test_best_follows_the_configured_monitor_and_mode(trained):
    lowest = KeepBestConfig(monitor="loss", mode="min")
    assert resolve_checkpoint("best", directory=str(trained), keep_best=lowest) == f"{trained}/model.ckpt-8"


def test_best_without_scores_says_how_they_get_there(tmp_path, managers):
    manager = managers(tmp_path, keep_best=None)
    manager.start(make_variables(), step=0)
    manager.on_step(2)
    with pytest.raises(
        CheckpointError,
        match=rf"^No checkpoint in {tmp_path} has a score: there is no scores.json naming a metric "
        r"to rank by \(scores are recorded in scores.json at each epoch end of a Keras fit\(\) with "
        r"checkpoint.keep_best set\). HINT: train with checkpoint.keep_best",
    ):
        resolve_checkpoint("best", directory=str(tmp_path))


def test_best_without_a_score_for_the_monitor_names_it(trained):
    accuracy = KeepBestConfig(monitor="val_accuracy", mode="max")
    with pytest.raises(
        CheckpointError,
        match=rf"^No checkpoint in {trained} has a score for 'val_accuracy' \(scores are recorded in "
        r"scores.json at each epoch end of a Keras fit\(\) with checkpoint.keep_best set, for the "
        r"checkpoints saved before it; the metric must be among the epoch's logs\). HINT: give "
        r"--checkpoint latest or a checkpoint prefix.$",
    ):
        resolve_checkpoint("best", directory=str(trained), keep_best=accuracy)


def test_best_needs_a_directory():
    with pytest.raises(CheckpointError, match=r"needs a checkpoint directory.*HINT: give best:DIR"):
        resolve_checkpoint("best")


def test_checkpoint_score_is_what_the_sidecar_records(trained):
    assert checkpoint_score(f"{trained}/model.ckpt-8") == {
        "monitor": "loss", "mode": "max", "value": 0.5, "epoch": 2,
        "metrics": {"loss": 0.5, "lr": pytest.approx(0.01)},
    }
    assert checkpoint_score(f"{trained}/model.ckpt-99") is None
