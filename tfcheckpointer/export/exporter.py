"""Exporting a finished run's verified frozen graph as the next version, then promoting and pruning."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from tfcheckpointer.checkpoint.storage import files_for
from tfcheckpointer.config.schema import ExportConfig, JobConfig
from tfcheckpointer.errors import ExportError, first_line
from tfcheckpointer.export import versions
from tfcheckpointer.export.manifest import build_manifest, config_hash
from tfcheckpointer.export.promotion import decide_promotion
from tfcheckpointer.export.savedmodel import write_saved_model
from tfcheckpointer.graph.files import read_graph_def, serialize_graph_def
from tfcheckpointer.graph.publish import FrozenGraph
from tfcheckpointer.graph.signature import TensorInfo

logger = logging.getLogger("tfcheckpointer")

GRAPH_FILENAMES = {"pb": "model.pb", "pbtxt": "model.pbtxt"}
"""The frozen graph's name inside a version directory, by `export.format`."""


@dataclasses.dataclass(frozen=True)
class ExportedVersion:
    """A published version and what was decided about it."""

    version: int
    path: str
    promoted: bool
    manifest: dict[str, Any]


def utc_now() -> str:
    """The current time as the manifest and the promotion log write it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def export_version(
    config: ExportConfig,
    frozen: FrozenGraph,
    *,
    job: JobConfig,
    metrics: Mapping[str, float],
    data_fingerprint: str | None = None,
    started: str | None = None,
) -> ExportedVersion:
    """Publish `frozen` as the next version of `config.directory`, promote it, prune old ones.

    The version directory holds the frozen graph (`model.pb` or
    `model.pbtxt`), a SavedModel of the same graph (`saved_model.pb`,
    `variables/`) and `manifest.json`; it appears whole, by one rename.

    Raises:
        ExportError: The version could not be written (none was published,
            LATEST is untouched), or LATEST could not be moved.
    """
    try:
        sidecar = json.loads(files_for(frozen.sidecar).read(frozen.sidecar))
        graph_def = read_graph_def(frozen.path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise ExportError(f"Cannot read the frozen graph {frozen.path}: {first_line(error)}") from None
    graph_file = GRAPH_FILENAMES[config.format]
    graph_bytes = serialize_graph_def(graph_def, as_text=config.format == "pbtxt")
    decision = decide_promotion()
    manifest: dict[str, Any] = {}

    def build(directory: str, version: int) -> None:
        write_saved_model(
            graph_def, _tensors(sidecar["inputs"]), _tensors(sidecar["outputs"]), directory
        )
        with open(os.path.join(directory, graph_file), "wb") as f:
            f.write(graph_bytes)
        manifest.update(build_manifest(
            version=version,
            frozen_graph=sidecar, graph_file=graph_file,
            graph_sha256=hashlib.sha256(graph_bytes).hexdigest(), metrics=metrics,
            champion=decision.as_dict(), config_sha256=config_hash(job),
            data_fingerprint=data_fingerprint, started=started, ended=utc_now(),
            software={
                "tensorflow": sidecar.get("tensorflow_version"),
                "keras": sidecar.get("keras_version"),
            },
        ))
        with open(os.path.join(directory, versions.MANIFEST_FILENAME), "w") as f:
            f.write(json.dumps(manifest, indent=2) + "\n")

    try:
        version, path = versions.publish_version(config.directory, build)
        if decision.promoted:
            versions.move_latest(config.directory, version, by="auto", reason=decision.reason)
        pruned = versions.prune_versions(config.directory, config.keep)
    except (OSError, tf.errors.OpError) as error:
        raise ExportError(f"Cannot export into {config.directory}: {first_line(error)}") from None
    logger.info(
        "Exported version=%d path=%s promoted=%s reason=%s pruned=%s",
        version, path, decision.promoted, decision.reason, pruned or "none",
    )
    return ExportedVersion(version, path, decision.promoted, manifest)


def _tensors(described: list[Mapping[str, Any]]) -> list[TensorInfo]:
    """The sidecar's `inputs` / `outputs` entries as `TensorInfo`s."""
    return [
        TensorInfo(t["name"], t["dtype"], None if t["shape"] is None else tuple(t["shape"]))
        for t in described
    ]
