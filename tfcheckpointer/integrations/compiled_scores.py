"""A Keras model's compiled loss and metrics, computed from predictions made elsewhere.

The gate runs frozen graphs and scores their outputs with the trained
model's `compile()` loss and metrics, as `Model.evaluate` would score the
model's own outputs -- except that the loss is the compiled loss alone:
regularization penalties (`model.losses`) belong to the live model's
weights, and a frozen graph has none, so neither side counts them.
The model's metric state is reset before and restored after, so scoring
neither sees nor disturbs what `fit` accumulated.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import keras

LOSS = "loss"
"""The figure of the compiled loss, as `fit` logs it (`val_loss` on validation data)."""


@dataclasses.dataclass(frozen=True)
class Scores:
    """Figures on a data set: `loss` and each compiled metric by its logged name, and the row count."""

    figures: dict[str, float]
    examples: int

    def as_dict(self) -> dict[str, Any]:
        """The manifest's `evaluation` entry."""
        return {"examples": self.examples, "figures": dict(self.figures)}


def score_predictions(model: keras.Model, batches: Iterable[tuple[Any, Any, Any]]) -> Scores:
    """The compiled loss and metrics over `batches` of `(y, y_pred, sample_weight)`.

    Each batch's loss is weighted by its rows, as `Model.evaluate`'s loss
    tracker weighs it, so the figures do not depend on how the data is batched.
    """
    compile_loss = model._compile_loss
    compile_metrics = model._compile_metrics
    loss_metrics = list(compile_loss.metrics) if compile_loss is not None else []
    loss = keras.metrics.Mean(name=LOSS)
    examples = 0
    with _fresh_state([m for m in (compile_metrics, *loss_metrics) if m is not None]):
        for y, y_pred, sample_weight in batches:
            rows = len(keras.tree.flatten(y_pred)[0])
            examples += rows
            if compile_loss is not None:
                value = compile_loss(y, y_pred, sample_weight)
                if value is not None:
                    loss.update_state(value, sample_weight=rows)
            if compile_metrics is not None:
                compile_metrics.update_state(y, y_pred, sample_weight)
        # In the order `Model.get_metrics_result` gives them.
        figures = {LOSS: loss.result()} if compile_loss is not None else {}
        if compile_metrics is not None and compile_metrics.built:
            figures.update(compile_metrics.result())
        figures.update({m.name: m.result() for m in loss_metrics})
        return Scores({name: float(value) for name, value in figures.items()}, examples)


def figure_name(monitor: str) -> str:
    """The figure `monitor` names: `val_loss` and `loss` both name `loss`."""
    return monitor.removeprefix("val_")


@contextlib.contextmanager
def _fresh_state(metrics: Sequence[Any]) -> Iterator[None]:
    """Run with `metrics` reset, then give them back the state they had."""
    saved = [(v, v.numpy()) for m in metrics for v in m.variables]
    for metric in metrics:
        metric.reset_state()
    try:
        yield
    finally:
        # Resetting first clears the variables a first use built, which `saved` lacks.
        for metric in metrics:
            metric.reset_state()
        for variable, value in saved:
            variable.assign(value)
