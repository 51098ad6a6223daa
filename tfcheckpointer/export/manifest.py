"""The `manifest.json` of an exported version: what it is, where it came from, how it was judged."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import sys
from collections.abc import Mapping
from typing import Any

from tfcheckpointer.config.schema import JobConfig
from tfcheckpointer.export.savedmodel import SIGNATURE_KEY


def config_hash(config: JobConfig) -> str:
    """sha256 of the validated config as stable JSON; where it was read from does not count."""
    content = dataclasses.asdict(dataclasses.replace(config, source=""))
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def final_metrics(history: Mapping[str, Any] | None) -> dict[str, float]:
    """The last epoch's value of each metric in a Keras `History.history`."""
    return {name: float(values[-1]) for name, values in (history or {}).items() if len(values)}


def build_manifest(
    *,
    version: int,
    frozen_graph: Mapping[str, Any],
    graph_file: str,
    graph_sha256: str,
    metrics: Mapping[str, float],
    champion: Mapping[str, Any],
    evaluation: Mapping[str, Any] | None,
    config_sha256: str,
    checkpoint_copy: Mapping[str, Any] | None,
    data_fingerprint: str | None,
    started: str | None,
    ended: str,
    software: Mapping[str, str | None],
) -> dict[str, Any]:
    """The manifest of `version`.

    Args:
        frozen_graph: The frozen graph's sidecar (`graph.publish`): its
            checkpoint, step, signature, hash and verification figures.
        graph_file: The frozen graph's name inside the version directory.
        graph_sha256: That file's sha256 (`export.format` may differ from the freeze's).
        checkpoint_copy: The source checkpoint kept in the version: its
            `prefix` relative to the version directory and whether it is
            `hard_linked`; None when the graph names no checkpoint.
        champion: The promotion decision (`promotion.Decision.as_dict`).
        evaluation: The model's figures on its run's validation data (with
            `export.promote_if`): what a later run compares with when it
            cannot evaluate this version on its own data.
        software: `tensorflow` and `keras` versions; the package's and
            Python's are added here.
        started, ended: ISO 8601 UTC times of the run's start and of the export.
    """
    return {
        "version": version,
        "checkpoint": frozen_graph.get("checkpoint"),
        "step": frozen_graph.get("step"),
        "checkpoint_copy": None if checkpoint_copy is None else dict(checkpoint_copy),
        "metrics": dict(metrics),
        "champion": dict(champion),
        "evaluation": None if evaluation is None else dict(evaluation),
        "config_sha256": config_sha256,
        "data_fingerprint": data_fingerprint,
        "started": started,
        "ended": ended,
        "frozen_graph": {
            "file": graph_file,
            "sha256": graph_sha256,
            "node_count": frozen_graph.get("node_count"),
            "verified": frozen_graph.get("verified"),
            "max_abs_diff": frozen_graph.get("max_abs_diff"),
            "verify_tolerance": frozen_graph.get("verify_tolerance"),
        },
        "signature": {
            "key": SIGNATURE_KEY,
            "inputs": frozen_graph.get("inputs"),
            "outputs": frozen_graph.get("outputs"),
        },
        "versions": {**software, "tfcheckpointer": _package_version(), "python": platform.python_version()},
    }


def _package_version() -> str:
    # The root package is loaded with any of its modules; importing it by name here would
    # make this layer depend on the top of the package (it imports the adapters lazily).
    return str(sys.modules["tfcheckpointer"].__version__)
