"""The export directory that TF Serving polls: numbered versions, `LATEST` and the promotion log.

    <directory>/1/  2/  3/           one finished run each (see `publish.build_version`)
    <directory>/LATEST               the promoted version's number, replaced atomically
    <directory>/promotions.jsonl     one JSON line per move of LATEST

A version is built under `.<n>.tmp-<pid>` and renamed to `<n>` in one
`os.rename`, so a reader polling the directory sees a whole version or none;
a pruned version is renamed away the same way before it is deleted. Directory
renames are atomic on local filesystems (and NFS); object stores (`s3://`,
`gs://`) have none, so a directory that is a URL commits each version by
uploading its `manifest.json` last instead (`object_versions`).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable

from tfcheckpointer.checkpoint.files import atomic_write
from tfcheckpointer.config.urls import is_url
from tfcheckpointer.errors import ExportError
from tfcheckpointer.export import object_versions

LATEST_FILENAME = "LATEST"
PROMOTION_LOG_FILENAME = "promotions.jsonl"
MANIFEST_FILENAME = "manifest.json"
GRAPH_FILENAMES = {"pb": "model.pb", "pbtxt": "model.pbtxt"}
"""The frozen graph's name inside a version directory, by `export.format`."""
_VERSION = re.compile(r"[1-9]\d*")
_TEMPORARY = re.compile(r"\.(\d+)\.tmp-(\d+)")


def list_versions(directory: str) -> list[int]:
    """The published version numbers in `directory`, ascending; [] if it does not exist."""
    if is_url(directory):
        return object_versions.list_versions(directory, MANIFEST_FILENAME)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(
        int(name) for name in names
        if _VERSION.fullmatch(name) and os.path.isdir(os.path.join(directory, name))
    )


def next_version(directory: str) -> int:
    """One more than any version there is or LATEST names: a number is never reused."""
    return max([0, *list_versions(directory), read_latest(directory) or 0]) + 1


def publish_version(directory: str, build: Callable[[str, int], object]) -> tuple[int, str]:
    """Build the next version with `build(temporary directory, version)`, rename it into place.

    The temporary directory exists and is empty when `build` is called. On any
    failure it is removed and no version appears.

    Returns:
        The new version's number and path.
    """
    if is_url(directory):
        version = next_version(directory)
        return version, object_versions.publish_version(directory, version, build, MANIFEST_FILENAME)
    os.makedirs(directory, exist_ok=True)
    remove_stale_temporaries(directory)
    version = next_version(directory)
    temporary = _temporary_path(directory, version)
    final = os.path.join(directory, str(version))
    try:
        os.mkdir(temporary)
        build(temporary, version)
        if os.path.exists(final):
            raise ExportError(f"Version {final} appeared while this one was built; nothing was published.")
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return version, final


def remove_stale_temporaries(directory: str) -> None:
    """Remove the `.<n>.tmp-<pid>` directories whose process is gone (a crashed publish or prune)."""
    for name in os.listdir(directory):
        match = _TEMPORARY.fullmatch(name)
        if match and not _process_alive(int(match.group(2))):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def read_manifest(version_path: str) -> object:
    """The parsed `manifest.json` of the version at `version_path` (a local path or a URL).

    Raises:
        OSError: It cannot be read (FileNotFoundError: there is none).
        ValueError: It is not JSON.
    """
    path = os.path.join(version_path, MANIFEST_FILENAME)
    if is_url(path):
        text = object_versions.read_text(path)
        if text is None:
            raise FileNotFoundError(f"No such file: {path}")
        return json.loads(text)
    with open(path) as f:
        return json.load(f)


def is_file(path: str) -> bool:
    """Whether the file `path` (a local path or a URL) exists."""
    return object_versions.exists(path) if is_url(path) else os.path.isfile(path)


def read_latest(directory: str) -> int | None:
    """The promoted version, or None when nothing was promoted yet."""
    path = os.path.join(directory, LATEST_FILENAME)
    if is_url(directory):
        text = object_versions.read_text(path)
    else:
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            text = None
    if text is None:
        return None
    text = text.strip()
    if not _VERSION.fullmatch(text):
        raise ExportError(f"{path} holds {text!r}, not a version number. HINT: "
                          "set it with `tfcheckpointer promote DIRECTORY --version N`.")
    return int(text)


def move_latest(directory: str, version: int, *, by: str, reason: str) -> None:
    """Point LATEST at `version` and append the move to the promotion log.

    Args:
        by: `auto` (a finished run) or `manual` (`tfcheckpointer promote`).
        reason: Why, in words, for whoever reads the log later.
    """
    previous = read_latest(directory)
    atomic_write(os.path.join(directory, LATEST_FILENAME), f"{version}\n".encode())
    entry = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "from": previous,
        "to": version,
        "by": by,
        "reason": reason,
    }
    line = json.dumps(entry) + "\n"
    if is_url(directory):
        object_versions.append_line(os.path.join(directory, PROMOTION_LOG_FILENAME), line)
        return
    # One write of one line with O_APPEND: concurrent appenders cannot interleave within it.
    descriptor = os.open(
        os.path.join(directory, PROMOTION_LOG_FILENAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
    )
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def read_promotions(directory: str) -> list[dict[str, object]]:
    """Every move of LATEST, oldest first."""
    path = os.path.join(directory, PROMOTION_LOG_FILENAME)
    if is_url(directory):
        text = object_versions.read_text(path) or ""
    else:
        try:
            with open(path) as f:
                text = f.read()
        except FileNotFoundError:
            return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def versions_to_prune(versions: Iterable[int], keep: int | None, promoted: int | None) -> list[int]:
    """The versions beyond the newest `keep`, never the promoted one; None keeps all."""
    if keep is None:
        return []
    older = sorted(versions)[:-keep]
    return [v for v in older if v != promoted]


def prune_versions(directory: str, keep: int | None) -> list[int]:
    """Delete the versions `versions_to_prune` names; return them."""
    doomed = versions_to_prune(list_versions(directory), keep, read_latest(directory))
    for version in doomed:
        if is_url(directory):
            object_versions.remove_version(directory, version, MANIFEST_FILENAME)
            continue
        # Renamed away first, so that a reader sees the whole version or none of it.
        temporary = _temporary_path(directory, version)
        os.rename(os.path.join(directory, str(version)), temporary)
        shutil.rmtree(temporary)
    return doomed


def _temporary_path(directory: str, version: int) -> str:
    return os.path.join(directory, f".{version}.tmp-{os.getpid()}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
