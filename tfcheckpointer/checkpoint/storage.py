"""The file operations every directory the package writes goes through, for paths and URLs.

`files_for(path)` gives TensorFlow's own file layer (`tf.io.gfile`: local
paths, `gs://`, `ram://`) or, for every other URL (`s3://`, ...), an
fsspec filesystem. Both raise `tf.errors.NotFoundError` for a missing file,
so callers handle one error for either. Credentials and endpoints are the
backend's own business (boto's `AWS_*` variables and files, fsspec's
configuration); nothing here takes them.

TensorFlow reads and writes checkpoints and graphs only where its file
layer reaches, so fsspec URLs are staged: `local_copy` downloads a
checkpoint into a temporary directory to read it, and `files.publish`
writes under a local temporary directory, then uploads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any, Protocol

import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.config.urls import uses_fsspec

STAGING_PREFIX = "tfcheckpointer-staging-"
"""Local temporary directories (under `$TMPDIR`) that stage what goes to or comes from a URL."""


class Files(Protocol):
    """What the package does to files; `path` is a local path or a URL."""

    def exists(self, path: str) -> bool: ...
    def isdir(self, path: str) -> bool: ...
    def listdir(self, path: str) -> list[str]: ...
    def stat(self, path: str) -> tuple[int, float]: ...
    def stat_many(self, path: str, names: list[str]) -> dict[str, tuple[int, float]]: ...
    def read(self, path: str) -> bytes: ...
    def write(self, path: str, data: bytes) -> None: ...
    def upload(self, local: str, path: str) -> None: ...
    def download(self, path: str, local: str) -> None: ...
    def rename(self, source: str, target: str) -> None: ...
    def remove(self, path: str) -> None: ...
    def rmtree(self, path: str) -> None: ...
    def makedirs(self, path: str) -> None: ...


class TensorFlowFiles:
    """`tf.io.gfile`. `write` is not atomic; `files.atomic_write` renames into place."""

    def exists(self, path: str) -> bool:
        return tf.io.gfile.exists(path)

    def isdir(self, path: str) -> bool:
        return tf.io.gfile.isdir(path)

    def listdir(self, path: str) -> list[str]:
        return [name.rstrip("/") for name in tf.io.gfile.listdir(path)]

    def stat(self, path: str) -> tuple[int, float]:
        """The size in bytes and the modification time in seconds."""
        stat = tf.io.gfile.stat(path)
        return stat.length, stat.mtime_nsec / 1e9

    def stat_many(self, path: str, names: list[str]) -> dict[str, tuple[int, float]]:
        """`stat` of each of `names` in the directory `path`."""
        return {name: self.stat(f"{path}/{name}") for name in names}

    def read(self, path: str) -> bytes:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()

    def write(self, path: str, data: bytes) -> None:
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(data)

    def upload(self, local: str, path: str) -> None:
        tf.io.gfile.copy(local, path, overwrite=True)

    def download(self, path: str, local: str) -> None:
        tf.io.gfile.copy(path, local, overwrite=True)

    def rename(self, source: str, target: str) -> None:
        tf.io.gfile.rename(source, target, overwrite=True)

    def remove(self, path: str) -> None:
        tf.io.gfile.remove(path)

    def rmtree(self, path: str) -> None:
        tf.io.gfile.rmtree(path)

    def makedirs(self, path: str) -> None:
        tf.io.gfile.makedirs(path)


class FsspecFiles:
    """An fsspec filesystem. Object stores have no directories and no rename: a
    directory exists while objects are under it, `makedirs` creates at most
    the bucket (s3fs does, where the credentials allow it), `rename` copies
    then deletes, and `write` is one PUT, which readers see whole or not at all."""

    def __init__(self, url: str):
        import fsspec  # only jobs that use such a URL need it (`tfcheckpointer[s3]`)

        # Listings are not cached: another process (a resumed run, a reader) may
        # have changed the directory since.
        self.fs: Any = fsspec.core.url_to_fs(url, use_listings_cache=False)[0]

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def isdir(self, path: str) -> bool:
        return bool(self.fs.isdir(path))

    def listdir(self, path: str) -> list[str]:
        with _not_found(path):
            listing = self.fs.ls(path, detail=False)
        return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in listing]

    def stat(self, path: str) -> tuple[int, float]:
        with _not_found(path):
            return _size_and_time(self.fs.info(path))

    def stat_many(self, path: str, names: list[str]) -> dict[str, tuple[int, float]]:
        """`stat` of each of `names` in the directory `path`, from one listing (one request)."""
        with _not_found(path):
            listing = self.fs.ls(path, detail=True)
        found = {entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry for entry in listing}
        return {name: _size_and_time(found[name]) for name in names if name in found}

    def read(self, path: str) -> bytes:
        with _not_found(path):
            return bytes(self.fs.cat_file(path))

    def write(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)

    def upload(self, local: str, path: str) -> None:
        self.fs.put_file(local, path)

    def download(self, path: str, local: str) -> None:
        with _not_found(path):
            self.fs.get_file(path, local)

    def rename(self, source: str, target: str) -> None:
        with _not_found(source):
            self.fs.mv(source, target)

    def remove(self, path: str) -> None:
        with _not_found(path):
            self.fs.rm_file(path)

    def rmtree(self, path: str) -> None:
        with _not_found(path):
            self.fs.rm(path, recursive=True)

    def makedirs(self, path: str) -> None:
        self.fs.makedirs(path, exist_ok=True)


def _size_and_time(info: dict[str, Any]) -> tuple[int, float]:
    """The size and modification time in an fsspec `info` (each backend names the time its way)."""
    modified = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
    if hasattr(modified, "timestamp"):
        modified = modified.timestamp()
    return int(info.get("size") or 0), float(modified)


@contextlib.contextmanager
def _not_found(path: str) -> Iterator[None]:
    """FileNotFoundError as TensorFlow's NotFoundError, which callers already handle."""
    try:
        yield
    except FileNotFoundError as error:
        raise tf.errors.NotFoundError(None, None, f"{path}: {error}") from None


_TENSORFLOW = TensorFlowFiles()


def files_for(path: str) -> Files:
    """The file layer that reaches `path`."""
    return FsspecFiles(path) if uses_fsspec(path) else _TENSORFLOW


def local_only_note(directory: str) -> str:
    """The one line saying what a checkpoint directory that is a URL goes without."""
    return (
        f"Checkpoint directory {directory} is not on a local disk: it is not locked "
        "(checkpoint.lock) and its free space is not checked; run one writer per directory."
    )


def staging_directory() -> str:
    """A new local temporary directory for staging; the caller removes it."""
    return tempfile.mkdtemp(prefix=STAGING_PREFIX)


@contextlib.contextmanager
def local_copy(prefix: str) -> Iterator[str]:
    """A prefix TensorFlow can read the checkpoint at `prefix` from, for the `with` block.

    `prefix` itself where TensorFlow's file layer reaches it; else its files
    (data, index, meta) are downloaded into a temporary directory, removed
    on exit.
    """
    copies = LocalCopies()
    try:
        yield copies.fetch(prefix)
    finally:
        copies.clear()


class LocalCopies:
    """Local copies of checkpoints at URLs TensorFlow cannot read, kept until `clear`.

    A restore can run after the call that chose it has returned (a TF1
    session's init op restores the checkpoint the hook planned), so the
    copy lives as long as its owner, the restorer, says.
    """

    def __init__(self) -> None:
        self._directory: str | None = None

    def fetch(self, prefix: str) -> str:
        """A prefix TensorFlow can read the checkpoint at `prefix` from (`prefix` if it can)."""
        if not uses_fsspec(prefix):
            return prefix
        if self._directory is None:
            self._directory = staging_directory()
        directory, name = prefix.rstrip("/").rsplit("/", 1)
        local = os.path.join(self._directory, name)
        if os.path.exists(local + naming.INDEX_SUFFIX):
            return local  # fetched already (retention may have deleted the original since)
        files = files_for(prefix)
        try:
            listing = files.listdir(directory)
        except tf.errors.NotFoundError:
            listing = []
        # The index last, as everywhere: a copy with an index is a whole one.
        for filename in sorted(listing, key=lambda f: f.endswith(naming.INDEX_SUFFIX)):
            if naming.is_checkpoint_file(filename, name):
                files.download(f"{directory}/{filename}", os.path.join(self._directory, filename))
        return local

    def clear(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
