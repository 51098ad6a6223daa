"""The gate's policy: figures in, a decision and its reason out. No TensorFlow."""

from __future__ import annotations

import math

import pytest

from tfcheckpointer.config.schema import PromoteIfConfig
from tfcheckpointer.export.promotion import ChampionFigure, decide_promotion, no_gate_decision

LOSS = PromoteIfConfig(monitor="val_loss", mode="min")
ACCURACY = PromoteIfConfig(monitor="accuracy", mode="max")


def champion(value, comparison="same data", problem=None):
    return ChampionFigure(version=4, value=value, comparison=comparison, problem=problem)


@pytest.mark.parametrize(
    ("gate", "challenger", "champion_value", "promoted"),
    [
        (LOSS, 0.30, 0.35, True),
        (LOSS, 0.35, 0.35, False),  # a tie is no improvement, as in EarlyStopping
        (LOSS, 0.40, 0.35, False),
        (ACCURACY, 0.91, 0.90, True),
        (ACCURACY, 0.89, 0.90, False),
        (PromoteIfConfig("val_loss", "min", min_delta=0.25), 0.25, 0.5, False),  # by exactly min_delta
        (PromoteIfConfig("val_loss", "min", min_delta=0.25), 0.24, 0.5, True),
        (PromoteIfConfig("val_loss", "min", min_relative_delta=0.1), 0.32, 0.35, False),  # < 0.035
        (PromoteIfConfig("val_loss", "min", min_relative_delta=0.1), 0.31, 0.35, True),
        (PromoteIfConfig("val_loss", "min", min_relative_delta=0.1), -1.2, -1.0, True),  # |champion|
        (PromoteIfConfig("val_loss", "min", min_delta=0.01, min_relative_delta=0.5), 0.2, 0.35, False),
        (LOSS, 0.30, math.nan, True),  # a champion that diverged is beaten by any number
    ],
)
def test_the_challenger_must_beat_the_champion_by_both_deltas(gate, challenger, champion_value, promoted):
    assert decide_promotion(gate, challenger, champion(champion_value)).promoted is promoted


def test_the_reason_holds_both_figures_and_the_facts_the_thresholds():
    gate = PromoteIfConfig("val_loss", "min", min_delta=0.01, at_most=2.0)
    decision = decide_promotion(gate, 0.9123, champion(0.35))
    assert decision.reason == (
        "val_loss 0.9123 vs champion v4 0.35 on this run's validation data: worse by 0.5623"
    )
    assert decision.as_dict() == {
        "decision": "not promoted", "reason": decision.reason, "monitor": "val_loss", "mode": "min",
        "challenger": 0.9123, "champion": 0.35, "champion_version": 4, "comparison": "same data",
        "thresholds": {"min_delta": 0.01, "min_relative_delta": 0.0, "at_most": 2.0, "at_least": None},
    }


def test_a_small_improvement_says_what_was_needed():
    gate = PromoteIfConfig("loss", "min", min_delta=0.01, min_relative_delta=0.1)
    assert decide_promotion(gate, 0.33, champion(0.35)).reason == (
        "val_loss 0.33 vs champion v4 0.35 on this run's validation data: improves by 0.02, not more "
        "than 0.035 (min_delta 0.01, min_relative_delta 0.1 x |champion|)"
    )


@pytest.mark.parametrize(
    ("gate", "challenger", "reason"),
    [
        (PromoteIfConfig("val_loss", "min", at_most=0.3), 0.31, "val_loss 0.31 is above at_most 0.3"),
        (PromoteIfConfig("val_accuracy", "max", at_least=0.9), 0.5, "val_accuracy 0.5 is below at_least 0.9"),
        (LOSS, math.inf, "val_loss inf is not a number"),
    ],
)
def test_the_bounds_hold_whatever_the_champion(gate, challenger, reason):
    for figure in (None, champion(10.0 if gate.mode == "min" else 0.0)):
        decision = decide_promotion(gate, challenger, figure)
        assert (decision.promoted, decision.reason) == (False, reason)


def test_the_first_version_is_promoted_and_says_there_was_no_champion():
    decision = decide_promotion(LOSS, 0.5, None)
    assert decision.promoted
    assert decision.reason == "val_loss 0.5; there was no champion (no LATEST) to compare with"
    assert (decision.facts["comparison"], decision.facts["champion_version"]) == ("no champion", None)


def test_a_recorded_comparison_says_so_and_why():
    figure = champion(0.35, "recorded", "its input has shape (None, 5)")
    decision = decide_promotion(LOSS, 0.3, figure)
    assert decision.promoted
    assert decision.reason == (
        "val_loss 0.3 vs champion v4 0.35 as recorded in its manifest (it cannot be evaluated on "
        "this run's data: its input has shape (None, 5))"
    )
    assert decision.facts["champion_problem"] == "its input has shape (None, 5)"


def test_a_champion_without_a_figure_is_not_replaced_automatically():
    decision = decide_promotion(LOSS, 0.3, champion(None, "none", "cannot read its manifest"))
    assert not decision.promoted
    assert decision.reason == (
        "val_loss 0.3, but champion v4 has no val_loss to compare with: cannot read its manifest; "
        "HINT: promote by hand with `tfcheckpointer promote`"
    )


def test_without_a_gate_every_version_is_promoted():
    assert no_gate_decision().as_dict() == {"decision": "promoted", "reason": "no promote_if gate configured"}
