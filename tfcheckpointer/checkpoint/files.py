"""The one atomic publish every writer uses, on any filesystem `tf.io.gfile` knows.

A file (or a checkpoint's set of files) is written under a temporary name
beside its final one, optionally checked there, and renamed into place; on
any failure what was written under the temporary name is removed and the
final name is untouched. Readers see the old file or the whole new one.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable

import tensorflow as tf

from tfcheckpointer.checkpoint import naming


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
    temp = path + naming.TEMP_INFIX
    try:
        write(temp)
        if check is not None:
            check(temp)
        suffixes = _suffixes(temp) if several_files else [""]
        suffixes.sort(key=lambda suffix: suffix == naming.INDEX_SUFFIX)
        for suffix in suffixes:
            tf.io.gfile.rename(temp + suffix, path + suffix, overwrite=True)
    except BaseException:
        for suffix in _suffixes(temp) if several_files else [""]:
            with contextlib.suppress(tf.errors.OpError):
                tf.io.gfile.remove(temp + suffix)
        raise


def atomic_write(path: str, data: bytes, *, check: Callable[[str], object] | None = None) -> None:
    """`publish` the bytes `data` at `path`."""

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
