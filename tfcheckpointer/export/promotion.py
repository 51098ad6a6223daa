"""Whether a new version is promoted (moves LATEST): the champion/challenger gate's policy.

Pure: it compares figures that were measured elsewhere (`integrations.gate`)
and imports no TensorFlow, so every rule is tested with plain numbers.
Without `export.promote_if` every new version is promoted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from tfcheckpointer.config.schema import PromoteIfConfig

NO_GATE_REASON = "no promote_if gate configured"

SAME_DATA = "same data"
"""Both models were evaluated on this run's validation data."""
RECORDED = "recorded"
"""The champion could not be, so its figure recorded in its manifest was used."""
NO_FIGURE = "none"
"""The champion could not be evaluated and its manifest records no figure for the monitor."""
NO_CHAMPION = "no champion"
"""Nothing was promoted before (no LATEST)."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """What was decided about a new version, and why.

    Attributes:
        promoted: Whether LATEST moves to it.
        reason: In words, with both figures; the log, the manifest and the
            promotion log say it.
        facts: The comparison behind it (monitor, figures, champion version,
            comparison, thresholds), for the manifest's `champion` entry.
    """

    promoted: bool
    reason: str
    facts: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "promoted" if self.promoted else "not promoted"

    def as_dict(self) -> dict[str, Any]:
        """The manifest's `champion` entry."""
        return {"decision": self.verdict, "reason": self.reason, **self.facts}


@dataclasses.dataclass(frozen=True)
class ChampionFigure:
    """The promoted version's figure for the monitor, and how it was obtained.

    Attributes:
        version: The version LATEST names.
        value: Its figure; None when it has none (`comparison` is `NO_FIGURE`).
        comparison: `SAME_DATA`, `RECORDED` or `NO_FIGURE`.
        problem: Why it could not be evaluated on this run's data (not `SAME_DATA`).
    """

    version: int
    value: float | None
    comparison: str
    problem: str | None = None


def no_gate_decision() -> Decision:
    """The decision without `export.promote_if`: promoted."""
    return Decision(True, NO_GATE_REASON)


def decide_promotion(
    gate: PromoteIfConfig, challenger: float, champion: ChampionFigure | None
) -> Decision:
    """Whether the new version, scoring `challenger`, replaces `champion` (None: there is none).

    The challenger must lie within `at_most` / `at_least`, and improve on the
    champion's figure (in `gate.mode`'s direction) by more than `min_delta`
    and by more than `min_relative_delta` x |champion|, as Keras's
    EarlyStopping counts an improvement: a tie is not one. A champion whose
    figure is not finite is beaten by any finite one; a champion without a
    figure is not replaced automatically.
    """
    name = _figure_name(gate.monitor)
    facts: dict[str, Any] = {
        "monitor": gate.monitor,
        "mode": gate.mode,
        "challenger": challenger,
        "champion": None if champion is None else champion.value,
        "champion_version": None if champion is None else champion.version,
        "comparison": NO_CHAMPION if champion is None else champion.comparison,
        "thresholds": {
            "min_delta": gate.min_delta,
            "min_relative_delta": gate.min_relative_delta,
            "at_most": gate.at_most,
            "at_least": gate.at_least,
        },
    }
    if champion is not None and champion.problem is not None:
        facts["champion_problem"] = champion.problem
    ours = f"{name} {_number(challenger)}"
    bound = _broken_bound(gate, challenger)
    if bound is not None:
        return Decision(False, f"{ours} {bound}", facts)
    if champion is None:
        return Decision(True, f"{ours}; there was no champion (no LATEST) to compare with", facts)
    where = _where(champion)
    if champion.value is None:
        return Decision(
            False,
            f"{ours}, but champion v{champion.version} has no {name} to compare with: "
            f"{champion.problem}; HINT: promote by hand with `tfcheckpointer promote`",
            facts,
        )
    versus = f"{ours} vs champion v{champion.version} {_number(champion.value)} {where}"
    if not math.isfinite(champion.value):
        return Decision(True, f"{versus}: the champion's figure is not a number", facts)
    shortfall = _shortfall(gate, challenger, champion.value)
    if shortfall is not None:
        return Decision(False, f"{versus}: {shortfall}", facts)
    return Decision(True, versus, facts)


def _figure_name(monitor: str) -> str:
    """The monitor as the log writes it: with `val_`, since it is measured on validation data."""
    return monitor if monitor.startswith("val_") else f"val_{monitor}"


def _broken_bound(gate: PromoteIfConfig, value: float) -> str | None:
    if not math.isfinite(value):
        return "is not a number"
    if gate.at_most is not None and value > gate.at_most:
        return f"is above at_most {_number(gate.at_most)}"
    if gate.at_least is not None and value < gate.at_least:
        return f"is below at_least {_number(gate.at_least)}"
    return None


def _shortfall(gate: PromoteIfConfig, challenger: float, champion: float) -> str | None:
    """Why `challenger` does not improve enough on `champion`; None when it does."""
    improvement = champion - challenger if gate.mode == "min" else challenger - champion
    needed = max(gate.min_delta, gate.min_relative_delta * abs(champion))
    if improvement > needed:
        return None
    if improvement <= 0:
        return "no improvement" if improvement == 0 else f"worse by {_number(-improvement)}"
    return (
        f"improves by {_number(improvement)}, not more than {_number(needed)} "
        f"(min_delta {_number(gate.min_delta)}, min_relative_delta "
        f"{_number(gate.min_relative_delta)} x |champion|)"
    )


def _where(champion: ChampionFigure) -> str:
    if champion.comparison == SAME_DATA:
        return "on this run's validation data"
    return f"as recorded in its manifest (it cannot be evaluated on this run's data: {champion.problem})"


def _number(value: float) -> str:
    return f"{value:.4g}"
