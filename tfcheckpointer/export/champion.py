"""The champion: the version LATEST names, as the gate needs it (its graph, signature, recorded figures)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from tfcheckpointer.export import versions
from tfcheckpointer.graph.signature import ModelSignature

@dataclasses.dataclass(frozen=True)
class Champion:
    """The promoted version.

    Attributes:
        version: Its number.
        graph: Its frozen graph file (`model.pb` or `model.pbtxt`); None if neither is there.
        signature: Its inputs and outputs per its manifest; None if the manifest lacks them.
        recorded: Its figures on its own run's validation data (the manifest's
            `evaluation.figures`); empty when it was published without a gate.
        problem: Why its manifest could not be read, if it could not.
    """

    version: int
    graph: str | None
    signature: ModelSignature | None
    recorded: Mapping[str, float]
    problem: str | None = None


def find_champion(directory: str) -> Champion | None:
    """The version LATEST names in the export `directory`; None when nothing was promoted yet.

    Raises:
        ExportError: LATEST holds something other than a version number.
    """
    version = versions.read_latest(directory)
    if version is None:
        return None
    path = os.path.join(directory, str(version))
    graph = next(
        (os.path.join(path, name) for name in versions.GRAPH_FILENAMES.values()
         if versions.is_file(os.path.join(path, name))),
        None,
    )
    try:
        # In an export directory that is a URL (`s3://`) too: a plain `open` cannot read there.
        manifest = versions.read_manifest(path)
        if not isinstance(manifest, dict):
            raise ValueError("it is not a JSON object")
    except (OSError, ValueError) as error:
        return Champion(version, graph, None, {}, f"cannot read its manifest: {error}")
    return Champion(version, graph, _signature(manifest), _recorded(manifest))


def _signature(manifest: Mapping[str, Any]) -> ModelSignature | None:
    try:
        return ModelSignature.from_dict(manifest["signature"])
    except (KeyError, TypeError):
        return None


def _recorded(manifest: Mapping[str, Any]) -> dict[str, float]:
    evaluation = manifest.get("evaluation") or {}
    figures = evaluation.get("figures") if isinstance(evaluation, Mapping) else None
    if not isinstance(figures, Mapping):
        return {}
    return {
        str(name): float(value) for name, value in figures.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
