"""The one atomic publish every writer uses, on any filesystem `tf.io.gfile` knows.

A file (or a checkpoint's set of files) is written under a temporary name
beside its final one, optionally checked there, and renamed into place; on
any failure what was written under the temporary name is removed and the
final name is untouched. Readers see the old file or the whole new one.

A URL TensorFlow cannot write (`s3://`, see `storage`) has no rename: the
files are written and checked under a local staging directory, then
uploaded, a checkpoint's data and `.meta` first and its `.index` last; an
object store shows each object whole or not at all, and a checkpoint
counts once its index is there (`CheckpointDirectory.prefixes`).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
from collections.abc import Callable

import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.storage import files_for, staging_directory
from tfcheckpointer.config.urls import uses_fsspec


def publish(
    path: str,
    write: Callable[[str], object],
    *,
    check: Callable[[str], object] | None = None,
    several_files: bool = False,
) -> None:
    """Write `path` through `write(temporary path)`, run `check` on it, then rename it into place.

    Args:
        path: The final name.
        write: Writes the file at the path it is given.
        check: Raises if the written file is not right; nothing is published then.
        several_files: `write` writes several files `<temp><suffix>` (a
            checkpoint's `.data-*`, `.meta` and `.index`); each is renamed to
            `<path><suffix>`, the `.index` last, so a checkpoint exists once
            its index does.
    """
    if uses_fsspec(path):
        _upload(path, write, check=check, several_files=several_files)
        return
    temp = path + naming.TEMP_INFIX
    try:
        write(temp)
        if check is not None:
            check(temp)
        for suffix in _index_last(_suffixes(temp) if several_files else [""]):
            tf.io.gfile.rename(temp + suffix, path + suffix, overwrite=True)
    except BaseException:
        for suffix in _suffixes(temp) if several_files else [""]:
            with contextlib.suppress(tf.errors.OpError):
                tf.io.gfile.remove(temp + suffix)
        raise


def _upload(
    path: str, write: Callable[[str], object], *, check: Callable[[str], object] | None,
    several_files: bool,
) -> None:
    """`publish` to a URL TensorFlow cannot write: stage locally, check, upload index last.

    A failed upload removes what it uploaded; a killed one can leave data
    files without an index, which no reader counts and the next run removes
    (`CheckpointDirectory.remove_stale_temp_files`).
    """
    files = files_for(path)
    staging = staging_directory()
    temp = os.path.join(staging, posixpath.basename(path))
    uploaded: list[str] = []
    try:
        write(temp)
        if check is not None:
            check(temp)
        for suffix in _index_last(_suffixes(temp) if several_files else [""]):
            files.upload(temp + suffix, path + suffix)
            uploaded.append(path + suffix)
    except BaseException:
        for target in uploaded if several_files else []:
            with contextlib.suppress(tf.errors.OpError, OSError):
                files.remove(target)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _index_last(suffixes: list[str]) -> list[str]:
    """A checkpoint exists once its index does, so that one is published last."""
    return sorted(suffixes, key=lambda suffix: suffix == naming.INDEX_SUFFIX)


def atomic_write(path: str, data: bytes, *, check: Callable[[str], object] | None = None) -> None:
    """`publish` the bytes `data` at `path`."""
    if uses_fsspec(path) and check is None:
        files_for(path).write(path, data)  # one PUT: readers see the old object or the new one
        return

    def write(temp: str) -> None:
        with tf.io.gfile.GFile(temp, "wb") as f:
            f.write(data)

    publish(path, write, check=check)


def _suffixes(temp: str) -> list[str]:
    """The suffixes of the files `<temp><suffix>` that exist."""
    directory, name = posixpath.split(temp)
    try:
        listing = tf.io.gfile.listdir(directory or ".")
    except tf.errors.NotFoundError:
        return []
    return [f[len(name) :] for f in listing if naming.is_checkpoint_file(f, name)]
