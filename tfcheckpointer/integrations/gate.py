"""The champion/challenger gate (`export.promote_if`): measure both models the same way, then decide.

The challenger is this run's verified frozen graph; the champion is the
version LATEST names. Each frozen graph is run on this run's validation
data, and its outputs are scored with the trained model's compiled loss and
metrics (`compiled_scores`). A champion that cannot be run on the data (its
inputs or outputs do not fit: the architecture changed) is compared by the
figure recorded in its manifest instead, and the decision says so. The
decision itself is `export.promotion`'s, which compares numbers only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from typing import Any

import keras

from tfcheckpointer.config.schema import PromoteIfConfig
from tfcheckpointer.errors import ConfigError, ExportError, first_line
from tfcheckpointer.export import versions
from tfcheckpointer.export.champion import Champion, find_champion
from tfcheckpointer.export.promotion import (
    NO_FIGURE,
    RECORDED,
    SAME_DATA,
    ChampionFigure,
    Decision,
    decide_promotion,
)
from tfcheckpointer.graph.files import read_bytes, read_graph_def
from tfcheckpointer.graph.keras_freeze import input_keys
from tfcheckpointer.graph.probe import Probe, resolve_probe
from tfcheckpointer.graph.publish import FrozenGraph
from tfcheckpointer.graph.runner import GraphRunner
from tfcheckpointer.graph.signature import ModelSignature
from tfcheckpointer.integrations.compiled_scores import Scores, figure_name, score_predictions
from tfcheckpointer.integrations.validation import ValidationData

logger = logging.getLogger("tfcheckpointer")

ORIGIN = "validation data"


@dataclasses.dataclass(frozen=True)
class Judgement:
    """The gate's decision and the new model's figures (the manifest's `champion` and `evaluation`)."""

    decision: Decision
    evaluation: Scores


class ChampionGate:
    """`export.promote_if` for one run: checked at train begin, judged after the freeze.

    Args:
        config: The `export.promote_if` section.
        directory: The export directory, whose LATEST names the champion.
        validation: This run's validation data.
        source: The job file (or label), for errors.
    """

    def __init__(
        self, config: PromoteIfConfig, directory: str, validation: ValidationData, *, source: str
    ):
        self.config = config
        self.directory = directory
        self.validation = validation
        self.source = source
        self._output_structure: Any = None

    def check(self, model: keras.Model, signature: ModelSignature | None = None) -> None:
        """Score the live model on the first validation batch: the data fits, the monitor exists.

        With the train-end frozen graph's `signature`, the batch's inputs are
        also checked as that graph will be fed them.

        Raises:
            ConfigError: The model cannot be scored on the validation data, or
                `promote_if.monitor` is not one of its compiled figures.
            ExportError: LATEST holds something other than a version number.
        """
        # Read now, so that a damaged LATEST fails before training rather than after it.
        versions.read_latest(self.directory)
        if not hasattr(model, "_compile_loss"):
            raise self._error(
                f"scores with a Keras 3 model's compiled loss and metrics; {type(model).__module__}."
                f"{type(model).__name__} is not one (tf_keras?)"
            )
        batch = next(self.validation.batches(), None)
        if batch is None:
            raise self._error("the validation data has no batches")
        x, y, sample_weight = batch
        try:
            if signature is not None:
                # The live model casts what its graph is fed as is (float ids for an int input).
                resolve_probe(Probe(x, ORIGIN), signature, batch_size=1, input_keys=input_keys(model))
            y_pred = model(x, training=False)
            scores = score_predictions(model, [(y, y_pred, sample_weight)])
        except Exception as error:  # the user's data, model and losses: say which step failed
            raise self._error(
                f"cannot score the model on its validation data: {first_line(error)}"
            ) from error
        # The frozen graphs' flat outputs are packed back into this structure for the loss.
        self._output_structure = y_pred
        name = figure_name(self.config.monitor)
        if name not in scores.figures:
            raise ConfigError(
                f"{self.config.monitor!r} is not a figure of the compiled model; it gives "
                + ", ".join(scores.figures),
                file=self.source, key="export.promote_if.monitor",
                hint="name the compiled loss (val_loss) or a metric passed to compile()",
            )

    def judge(self, model: keras.Model, frozen: FrozenGraph) -> Judgement:
        """Score the new frozen graph and the champion on the validation data; decide.

        Raises:
            ExportError: The new frozen graph cannot be scored (LATEST is untouched).
        """
        name = figure_name(self.config.monitor)
        try:
            # Read as the exporter reads it: `freeze.output` may be a URL (`s3://`).
            signature = ModelSignature.from_dict(json.loads(read_bytes(frozen.sidecar)))
            challenger = self._score(model, frozen.path, signature)
            if not challenger.examples:
                # Else its figures are an empty mean's 0: a "perfect" model.
                raise ValueError("it gave no rows")
        except Exception as error:  # whatever it is, no version may be published unjudged
            raise ExportError(
                f"Cannot score the new model {frozen.path} on this run's validation data: "
                f"{first_line(error)}; no version was published."
            ) from error
        champion = find_champion(self.directory)
        figure = None if champion is None else self._champion_figure(
            model, champion, signature, challenger.examples
        )
        decision = decide_promotion(self.config, challenger.figures[name], figure)
        return Judgement(decision, challenger)

    def _champion_figure(
        self, model: keras.Model, champion: Champion, challenger: ModelSignature, examples: int
    ) -> ChampionFigure:
        name = figure_name(self.config.monitor)
        problem = _unfit(champion, challenger)
        if problem is None:
            assert champion.graph is not None and champion.signature is not None
            try:
                scores = self._score(model, champion.graph, champion.signature)
            except Exception as error:  # an old graph on new data: any failure means "does not fit"
                problem = f"running it on the data failed: {first_line(error)}"
            else:
                if scores.examples == examples:
                    return ChampionFigure(champion.version, scores.figures[name], SAME_DATA)
                # A dataset that gives other rows on a later pass (a one-shot generator).
                problem = (
                    f"this run's validation data gave it {scores.examples} rows and the new "
                    f"model {examples}: not the same data"
                )
        recorded = champion.recorded.get(name)
        logger.warning(
            "Champion v%d cannot be evaluated on this run's validation data (%s); %s",
            champion.version, problem,
            f"comparing with its recorded {self.config.monitor} {recorded:.4g} instead"
            if recorded is not None else f"its manifest records no {self.config.monitor} either",
        )
        return ChampionFigure(
            champion.version, recorded, RECORDED if recorded is not None else NO_FIGURE, problem
        )

    def _score(self, model: keras.Model, graph: str, signature: ModelSignature) -> Scores:
        with GraphRunner(read_graph_def(graph), signature) as runner:
            return score_predictions(model, self._predictions(model, runner))

    def _predictions(self, model: keras.Model, runner: GraphRunner) -> Iterator[tuple[Any, Any, Any]]:
        keys = input_keys(model)
        for x, y, sample_weight in self.validation.batches():
            inputs = resolve_probe(
                Probe(x, ORIGIN), runner.signature, batch_size=1, input_keys=keys
            ).data
            outputs = runner.run(inputs)
            yield y, keras.tree.pack_sequence_as(self._output_structure, outputs), sample_weight

    def _error(self, message: str) -> ConfigError:
        return ConfigError(message, file=self.source, key="export.promote_if")


def _unfit(champion: Champion, challenger: ModelSignature) -> str | None:
    """Why the champion's graph cannot be scored like the challenger's, or None.

    Its inputs are checked against the data when it runs; its outputs must
    match the new model's, which the compiled loss was built for.
    """
    if champion.problem is not None:
        return champion.problem
    if champion.graph is None:
        return "its version directory has no model.pb or model.pbtxt"
    if champion.signature is None:
        return "its manifest has no signature"
    theirs = [(o.dtype, o.shape) for o in champion.signature.outputs]
    ours = [(o.dtype, o.shape) for o in challenger.outputs]
    if theirs != ours:
        return f"its outputs {_describe(theirs)} differ from the new model's {_describe(ours)}"
    return None


def _describe(outputs: list[tuple[str, Any]]) -> str:
    return ", ".join(f"{dtype}{list(shape) if shape is not None else '[?]'}" for dtype, shape in outputs)
