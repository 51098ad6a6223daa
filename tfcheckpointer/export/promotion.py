"""Whether a new version is promoted (moves LATEST): the one place a champion/challenger gate decides.

No gate is configured yet, so every new version is promoted; a gate
(`export.promote_if`) plugs in here and returns its decision and reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any

NO_GATE_REASON = "no promote_if gate configured"


@dataclasses.dataclass(frozen=True)
class Decision:
    """What was decided about a new version, and why."""

    promoted: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The manifest's `champion` entry."""
        return {"decision": "promoted" if self.promoted else "not promoted", "reason": self.reason}


def decide_promotion() -> Decision:
    """The decision for a new version: promoted, since no gate is configured."""
    return Decision(True, NO_GATE_REASON)
