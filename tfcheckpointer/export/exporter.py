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

from tfcheckpointer.checkpoint.copies import copy_checkpoint
from tfcheckpointer.checkpoint.storage import files_for
from tfcheckpointer.config.schema import ExportConfig, JobConfig
from tfcheckpointer.errors import CheckpointError, ExportError, first_line
from tfcheckpointer.export import versions
from tfcheckpointer.export.manifest import build_manifest, config_hash
from tfcheckpointer.export.promotion import Decision, no_gate_decision
from tfcheckpointer.export.savedmodel import write_saved_model
from tfcheckpointer.graph.files import read_graph_def, serialize_graph_def
from tfcheckpointer.graph.publish import FrozenGraph
from tfcheckpointer.graph.signature import ModelSignature

logger = logging.getLogger("tfcheckpointer")

CHECKPOINT_DIRECTORY = "checkpoint"
"""A version's copy of the checkpoint it was frozen from (TF Serving ignores the directory)."""


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
    decision: Decision | None = None,
    evaluation: Mapping[str, Any] | None = None,
    data_fingerprint: str | None = None,
    started: str | None = None,
) -> ExportedVersion:
    """Publish `frozen` as the next version of `config.directory`, promote it if so decided, prune.

    The version directory holds the frozen graph (`model.pb` or
    `model.pbtxt`), a SavedModel of the same graph (`saved_model.pb`,
    `variables/`), `checkpoint/` (the source checkpoint, hard-linked where
    possible, from which a later run can start: `warm_start`) and
    `manifest.json`; it appears whole, by one rename.

    Args:
        decision: The gate's decision (`integrations.gate`); None: no gate, promoted.
        evaluation: The new model's figures on this run's validation data
            (`{"examples": n, "figures": {...}}`), kept in the manifest so that a
            later run can compare with them when it cannot evaluate this model.

    Raises:
        ExportError: The version could not be written (none was published,
            LATEST is untouched), or LATEST could not be moved.
    """
    try:
        sidecar = json.loads(files_for(frozen.sidecar).read(frozen.sidecar))
        graph_def = read_graph_def(frozen.path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise ExportError(f"Cannot read the frozen graph {frozen.path}: {first_line(error)}") from None
    graph_file = versions.GRAPH_FILENAMES[config.format]
    graph_bytes = serialize_graph_def(graph_def, as_text=config.format == "pbtxt")
    decision = decision or no_gate_decision()
    signature = ModelSignature.from_dict(sidecar)
    manifest: dict[str, Any] = {}

    def build(directory: str, version: int) -> None:
        write_saved_model(graph_def, signature.inputs, signature.outputs, directory)
        with open(os.path.join(directory, graph_file), "wb") as f:
            f.write(graph_bytes)
        kept = None
        if sidecar.get("checkpoint"):
            copy = copy_checkpoint(sidecar["checkpoint"], os.path.join(directory, CHECKPOINT_DIRECTORY))
            kept = {"prefix": os.path.relpath(copy.prefix, directory), "hard_linked": copy.linked}
        manifest.update(build_manifest(
            version=version,
            frozen_graph=sidecar, graph_file=graph_file,
            graph_sha256=hashlib.sha256(graph_bytes).hexdigest(), metrics=metrics,
            champion=decision.as_dict(), evaluation=evaluation, config_sha256=config_hash(job),
            checkpoint_copy=kept,
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
    except (OSError, tf.errors.OpError, CheckpointError) as error:
        raise ExportError(f"Cannot export into {config.directory}: {first_line(error)}") from None
    logger.info("Exported version=%d path=%s pruned=%s", version, path, pruned or "none")
    # One line with both figures, a warning when the new model was kept out.
    logger.log(
        logging.INFO if decision.promoted else logging.WARNING,
        "Version %d %s: %s", version, decision.verdict, decision.reason,
    )
    return ExportedVersion(version, path, decision.promoted, manifest)
