"""Scoring predictions with a model's compiled loss and metrics, as the champion gate does."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tfcheckpointer.integrations.compiled_scores import score_predictions


def regression(regularizer=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((3,)), keras.layers.Dense(2, kernel_regularizer=regularizer, name="out"),
    ])
    model.compile("sgd", "mse", metrics=["mae"], weighted_metrics=["mse"])
    return model


def data(seed, rows=30):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((rows, 3)).astype("float32"), rng.standard_normal((rows, 2)).astype("float32"),
            rng.uniform(0.5, 2, rows).astype("float32"))


def batches(model, x, y, weights, sizes):
    start = 0
    for size in sizes:
        part = slice(start, start + size)
        yield y[part], model(x[part]).numpy(), weights[part]
        start += size


def test_the_figures_are_what_evaluate_gives_however_the_data_is_batched():
    model = regression()
    x, y, weights = data(1)
    expected = model.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    scores = score_predictions(model, batches(model, x, y, weights, [7, 16, 7]))
    assert scores.examples == 30
    assert list(scores.figures) == ["loss", "mae", "mse"]
    assert scores.figures == pytest.approx(expected, rel=1e-5)


def test_the_loss_leaves_out_regularization_penalties():
    model = regression(keras.regularizers.L2(1.0))
    x, y, _ = data(1)
    predictions = model(x).numpy()
    scores = score_predictions(model, [(y, predictions, None)])
    assert scores.figures["loss"] == pytest.approx(float(np.mean((predictions - y) ** 2)), rel=1e-5)
    with_penalty = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    penalty = float(sum(np.asarray(loss) for loss in model.losses))
    assert with_penalty == pytest.approx(scores.figures["loss"] + penalty, rel=1e-5)


def test_the_model_s_metric_state_is_fresh_for_scoring_and_restored_after():
    model = regression()
    x, y, weights = data(1)
    model.evaluate(x, y, sample_weight=weights, verbose=0)
    before = {name: float(value) for name, value in model.get_metrics_result().items()}
    other_x, other_y, other_weights = data(2, rows=10)
    first = score_predictions(model, batches(model, other_x, other_y, other_weights, [10]))
    again = score_predictions(model, batches(model, other_x, other_y, other_weights, [10]))
    assert first == again
    assert {name: float(value) for name, value in model.get_metrics_result().items()} == before
