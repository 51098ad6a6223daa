"""Keeping a checkpoint's weights somewhere else: an exported version's `checkpoint/` directory.

A Saver never rewrites a checkpoint's files in place, and retention only
unlinks their names, so a hard link is a copy that costs no space while the
original lives and keeps the data once retention deletes it. Across
filesystems (or off a local disk) the files are copied instead.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil

import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.directory import CheckpointDirectory, is_local
from tfcheckpointer.checkpoint.policy import CheckpointInfo
from tfcheckpointer.checkpoint.storage import files_for
from tfcheckpointer.errors import CheckpointError

# What a hard link cannot cross: another filesystem, or one without links (EPERM on some).
_LINK_REFUSALS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


@dataclasses.dataclass(frozen=True)
class CheckpointCopy:
    """A checkpoint put into another directory by `copy_checkpoint`."""

    prefix: str
    """Its prefix in the target directory."""
    linked: bool
    """Whether every file is a hard link to the original (else some were copied)."""


def copy_checkpoint(prefix: str, target: str) -> CheckpointCopy:
    """Put the checkpoint at `prefix` (its `.index` and `.data-*` files) into the new directory `target`.

    Each file is hard-linked where the filesystem allows it, else copied;
    a `checkpoint` state file naming it is written beside, so that
    `tf.train.latest_checkpoint(target)` finds it.

    Raises:
        CheckpointError: `prefix` is not a checkpoint named `<basename>-<step>`.
    """
    source = CheckpointDirectory(os.path.dirname(prefix) or ".")
    name = prefix.rsplit("/", 1)[-1]
    parsed = naming.index_file_checkpoint(name + naming.INDEX_SUFFIX)
    files = [f for f in source.files_of(prefix) if not f.endswith(naming.META_SUFFIX)]
    if parsed is None or name + naming.INDEX_SUFFIX not in files:
        raise CheckpointError(f"No checkpoint <basename>-<step> at {prefix} to keep a copy of.")
    basename, step = parsed
    tf.io.gfile.makedirs(target)
    linked = True
    size = 0
    for filename in files:
        linked &= _link_or_copy(f"{source.directory}/{filename}", f"{target}/{filename}")
        size += tf.io.gfile.stat(f"{target}/{filename}").length
    written = tf.io.gfile.stat(f"{target}/{name}{naming.INDEX_SUFFIX}").mtime_nsec / 1e9
    CheckpointDirectory(target, basename).write_state([CheckpointInfo(step, written, size)], latest=step)
    return CheckpointCopy(f"{target}/{name}", linked)


def _link_or_copy(source: str, target: str) -> bool:
    """Hard-link `source` as `target`, else copy it; return whether it was linked."""
    if is_local(source) and is_local(target):
        try:
            os.link(source, target)
            return True
        except OSError as error:
            if error.errno not in _LINK_REFUSALS:
                raise
        shutil.copyfile(source, target)
        return False
    files_for(source).download(source, target)  # from a bucket too (a version is built locally)
    return False
