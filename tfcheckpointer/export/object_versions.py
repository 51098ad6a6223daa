"""An export directory at a URL (`s3://`, `gs://`, ...): versions committed by their manifest.

Object stores have no atomic directory rename, so a version cannot appear
in one step as it does on a local disk (`versions.publish_version`).
Instead it is built under a local staging directory and uploaded with its
`manifest.json` last: the manifest is the commit marker. A version without
one is not a version (`list_versions` skips it, so LATEST never names it
and its number is reused), and pruning deletes the manifest first. Inside
the version `saved_model.pb` goes up just before the manifest, so that a
TF Serving polling the bucket finds the SavedModel only once its
variables are there.

`promotions.jsonl` cannot be appended to in place: it is read, extended and
written back in one PUT, so two runs promoting at the same instant may lose
one line (LATEST itself is one PUT and stays whole).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable

import tensorflow as tf

from tfcheckpointer.checkpoint.files import atomic_write
from tfcheckpointer.checkpoint.storage import files_for, staging_directory
from tfcheckpointer.errors import ExportError

SAVED_MODEL_FILENAME = "saved_model.pb"


def list_versions(directory: str, manifest: str) -> list[int]:
    """The committed versions (those with a `manifest`), ascending."""
    files = files_for(directory)
    try:
        names = files.listdir(directory)
    except tf.errors.NotFoundError:
        return []
    numbers = [int(name) for name in names if name.isdigit() and not name.startswith("0")]
    return sorted(n for n in numbers if files.exists(f"{directory}/{n}/{manifest}"))


def publish_version(
    directory: str, version: int, build: Callable[[str, int], object], manifest: str
) -> str:
    """Build `version` locally with `build(staging directory, version)`, upload it, manifest last.

    Leftovers of an upload that died before its manifest (the same number,
    never committed) are removed first. On failure what was uploaded is
    removed again. Returns the version's URL.
    """
    files = files_for(directory)
    final = f"{directory}/{version}"
    with contextlib.suppress(tf.errors.NotFoundError):
        files.rmtree(final)
    staging = staging_directory()
    try:
        build(staging, version)
        if files.exists(f"{final}/{manifest}"):
            raise ExportError(f"Version {final} appeared while this one was built; nothing was published.")
        try:
            for name in _upload_order(staging, manifest):
                files.upload(os.path.join(staging, name), f"{final}/{name}")
        except BaseException:
            with contextlib.suppress(tf.errors.OpError, OSError):
                files.rmtree(final)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _upload_order(root: str, manifest: str) -> list[str]:
    """Every file under `root` (relative, `/`-separated): the SavedModel's graph, then the manifest, last."""
    names = [
        os.path.relpath(os.path.join(parent, name), root).replace(os.sep, "/")
        for parent, _, filenames in os.walk(root)
        for name in filenames
    ]
    last = {SAVED_MODEL_FILENAME: 1, manifest: 2}
    return sorted(names, key=lambda name: (last.get(name, 0), name))


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return files_for(path).read(path).decode("utf-8")
    except tf.errors.NotFoundError:
        return None


def exists(path: str) -> bool:
    return files_for(path).exists(path)


def append_line(path: str, line: str) -> None:
    """Read, extend and write back: object stores have no append."""
    atomic_write(path, ((read_text(path) or "") + line).encode())


def remove_version(directory: str, version: int, manifest: str) -> None:
    """Uncommit `version` (its manifest goes first), then delete the rest."""
    files = files_for(directory)
    final = f"{directory}/{version}"
    with contextlib.suppress(tf.errors.NotFoundError):
        files.remove(f"{final}/{manifest}")
    with contextlib.suppress(tf.errors.NotFoundError):
        files.rmtree(final)
