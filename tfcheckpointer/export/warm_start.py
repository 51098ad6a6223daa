"""Where a scheduled run starts (`export.warm_start`): its own newest checkpoint, or the promoted version.

A run whose directory's newest checkpoint is the source of an exported
version follows a run that finished. If that version is not the promoted
one (the gate kept it out, or LATEST was rolled back by hand), building on
it would carry a rejected model into the next run; with `warm_start:
promoted` the run starts from the promoted version's copy of its checkpoint
instead. A newest checkpoint that is no version's source belongs to an
interrupted run, which resumes from it. `plan_start` decides over plain
values; `read_start_plan` reads them from disk.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.directory import CheckpointDirectory, directory_key
from tfcheckpointer.config.schema import WARM_START_LATEST, ExportConfig
from tfcheckpointer.export import versions

logger = logging.getLogger("tfcheckpointer")

RESUME = "resume"
"""Resume from the directory's newest checkpoint, as `checkpoint.restore: latest` does."""
FROM_PROMOTED = "promoted"
"""Set the directory's checkpoints aside and start from the promoted version's checkpoint."""
FRESH = "fresh"
"""Set the directory's checkpoints aside and start from the model's initial weights."""


@dataclasses.dataclass(frozen=True)
class VersionSource:
    """What a run needs to know of one exported version."""

    checkpoint: str | None
    """The checkpoint it was frozen from (the manifest's `checkpoint`), as a comparable key."""
    copy: str | None
    """Its own copy of that checkpoint (`<version>/checkpoint/...`), if it has a usable one."""
    step: int | None = None


@dataclasses.dataclass(frozen=True)
class StartPlan:
    """How a run starts, and why, in words for the log."""

    action: str
    """`RESUME`, `FROM_PROMOTED` or `FRESH`."""
    reason: str
    version: int | None = None
    """The promoted version started from (`FROM_PROMOTED`)."""
    prefix: str | None = None
    """Its checkpoint copy, restored with the optimizer and the step."""
    step: int | None = None


def plan_start(
    *,
    warm_start: str,
    newest: str | None,
    sources: Mapping[int, VersionSource],
    promoted: int | None,
) -> StartPlan:
    """Decide where a run with `checkpoint.restore: latest` starts.

    Args:
        warm_start: `export.warm_start`: `promoted` or `latest`.
        newest: The key of the run directory's newest checkpoint, or None.
        sources: Each kept version's source checkpoint and copy.
        promoted: The version LATEST names, or None.
    """
    if warm_start == WARM_START_LATEST:
        return StartPlan(RESUME, "export.warm_start is latest")
    if newest is None:
        return StartPlan(RESUME, "no checkpoint to resume from")
    exported = sorted(v for v, source in sources.items() if source.checkpoint == newest)
    if not exported:
        return StartPlan(RESUME, "the newest checkpoint was not exported: the last run did not finish")
    if promoted in exported:
        return StartPlan(RESUME, f"the newest checkpoint is promoted version {promoted}'s")
    rejected = f"the newest checkpoint is version {exported[-1]}'s, which is not promoted"
    if promoted is None:
        return StartPlan(FRESH, f"{rejected}, and no version is promoted")
    source = sources.get(promoted)
    if source is None or source.copy is None:
        return StartPlan(FRESH, f"{rejected}, and promoted version {promoted} holds no checkpoint")
    return StartPlan(
        FROM_PROMOTED, f"{rejected} ({promoted} is)", version=promoted,
        prefix=source.copy, step=source.step,
    )


def read_start_plan(config: ExportConfig, directory: CheckpointDirectory) -> StartPlan:
    """`plan_start` for a run writing to `directory` and exporting per `config`, from what is on disk."""
    newest = None if config.warm_start == WARM_START_LATEST else directory.latest()
    if newest is None:  # nothing on disk decides: LATEST and the manifests are not read
        return plan_start(warm_start=config.warm_start, newest=None, sources={}, promoted=None)
    sources = {
        version: _version_source(os.path.join(config.directory, str(version)))
        for version in versions.list_versions(config.directory)
    }
    return plan_start(
        warm_start=config.warm_start, newest=checkpoint_key(newest), sources=sources,
        promoted=versions.read_latest(config.directory),
    )


def checkpoint_key(prefix: str) -> str:
    """One spelling per checkpoint: its directory's `directory_key` and its name."""
    head, _, name = prefix.rstrip("/").rpartition("/")
    return f"{directory_key(head or '.')}/{name}"


def _version_source(path: str) -> VersionSource:
    """A version's source checkpoint and copy, from its manifest; an unreadable one has neither."""
    try:
        # In an export directory that is a URL (`s3://`) too: a plain `open` cannot read there.
        manifest = versions.read_manifest(path)
    except (OSError, ValueError) as error:
        logger.warning("Ignoring version %s when choosing where to start: %s", path, error)
        return VersionSource(None, None)
    checkpoint = manifest.get("checkpoint")
    kept = manifest.get("checkpoint_copy") or {}
    copy = os.path.join(path, kept["prefix"]) if kept.get("prefix") else None
    if copy is not None and not versions.is_file(copy + naming.INDEX_SUFFIX):
        copy = None
    return VersionSource(
        checkpoint_key(checkpoint) if checkpoint else None, copy, manifest.get("step"),
    )
