"""A checkpoint directory: which checkpoints it holds, which is the latest, and its state file.

`CheckpointDirectory.candidates()` is the one rule for "which checkpoint is
the latest", used by resume, `tfcheckpointer freeze`, `inspect` and
everything else: the `checkpoint` state file's pick first (when it names one
of this basename's checkpoints that is on disk), then the others by step,
newest first. A damaged state file is skipped with a warning, never fatal.

Files go through `storage.files_for`: any filesystem TensorFlow knows (local,
`ram://`, `gs://`, ...), and other URLs (`s3://`, ...) through fsspec. The
state file holds paths relative to the directory, so a run directory can be
moved or copied.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import shutil

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.training import checkpoint_state_pb2

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.files import atomic_write
from tfcheckpointer.checkpoint.policy import CheckpointInfo
from tfcheckpointer.checkpoint.storage import files_for
from tfcheckpointer.errors import CheckpointError, first_line

logger = logging.getLogger("tfcheckpointer")


def is_local(path: str) -> bool:
    return "://" not in path


def directory_key(directory: str) -> str:
    """One spelling per directory: the real path of a local one, the URL without a trailing `/`."""
    return os.path.realpath(directory or ".") if is_local(directory) else directory.rstrip("/")


def same_directory(a: str, b: str) -> bool:
    return directory_key(a) == directory_key(b)


class CheckpointDirectory:
    """The `<directory>/<basename>-<step>` checkpoints of one directory.

    Args:
        directory: The directory.
        basename: Only checkpoints of this basename count; None counts every
            `<name>-<step>` checkpoint (for reading a directory some other
            program wrote).
    """

    def __init__(self, directory: str, basename: str | None = None):
        self.directory = directory.rstrip("/") or "/"
        self.basename = basename
        self.files = files_for(self.directory)

    @property
    def state_path(self) -> str:
        return f"{self.directory}/{naming.STATE_FILENAME}"

    def prefix(self, step: int) -> str:
        return naming.checkpoint_prefix(self.directory, self._require_basename(), step)

    def name(self, step: int) -> str:
        """The checkpoint's name in the directory: its prefix without the directory."""
        return naming.checkpoint_name(self._require_basename(), step)

    # --- Reading ---------------------------------------------------------------------

    def list_checkpoints(self) -> list[CheckpointInfo]:
        """The complete checkpoints of this basename on disk, oldest step first."""
        basename = self._require_basename()
        # One listing and one stat per file (an object store's listing has them all): directories
        # that keep every checkpoint get long.
        sizes: dict[int, int] = collections.defaultdict(int)
        written: dict[int, float] = {}
        ours = {
            name: match for name in self._listdir()
            if (match := naming.checkpoint_file_step(name, basename)) is not None
        }
        for filename, (length, modified) in self.files.stat_many(self.directory, list(ours)).items():
            step, is_index = ours[filename]
            sizes[step] += length
            if is_index:
                written[step] = modified
        return [CheckpointInfo(step, written[step], sizes[step]) for step in sorted(written)]

    def candidates(self) -> list[str]:
        """Checkpoint prefixes to resume from, best first: the state file's, then by step."""
        on_disk = self.prefixes()
        # With nothing on disk the state file has nothing to pick (and no warning to give).
        state = self.read_state() if on_disk else None
        if state is not None:
            # Only a pick among our own checkpoints: another Saver may share the file, and a
            # directory moved with absolute paths in it still names its own files by name.
            name = state.model_checkpoint_path.rstrip("/").rsplit("/", 1)[-1]
            picked = f"{self.directory}/{name}"
            if picked in on_disk:
                on_disk = [picked] + [p for p in on_disk if p != picked]
        return on_disk

    def latest(self) -> str | None:
        """The newest checkpoint: the state file's, or the highest step on disk."""
        candidates = self.candidates()
        return candidates[0] if candidates else None

    def prefixes(self) -> list[str]:
        """Every complete checkpoint (one with an `.index`) of the basename, highest step first.

        Without a basename every index counts, also one without a step (a TF1
        `Saver.save` without `global_step`), which sorts below every step.
        """
        found = []
        for filename in self._listdir():
            if not filename.endswith(naming.INDEX_SUFFIX):
                continue
            name = filename[: -len(naming.INDEX_SUFFIX)]
            if self.basename is None:
                step = naming.step_of_prefix(name)
            else:
                match = naming.index_file_checkpoint(filename)
                if match is None or match[0] != self.basename:
                    continue
                step = match[1]
            found.append((step is not None, step or 0, name))
        return [f"{self.directory}/{name}" for *_, name in sorted(found, reverse=True)]

    def read_state(self, *, warn: bool = True) -> checkpoint_state_pb2.CheckpointState | None:
        """The parsed state file; None when there is none, or it is damaged (with a warning)."""
        try:
            text = self.files.read(self.state_path).decode("utf-8")
            state = text_format.Parse(text, checkpoint_state_pb2.CheckpointState())
        except tf.errors.NotFoundError:
            return None
        except (text_format.ParseError, UnicodeDecodeError, tf.errors.OpError) as error:
            if warn:
                logger.warning("Ignoring %s: %s", self.state_path, first_line(error))
            return None
        if not state.model_checkpoint_path:
            # Never written so by us; TensorFlow's own readers reject it.
            if warn:
                logger.warning("Ignoring %s: it names no checkpoint.", self.state_path)
            return None
        return state

    def files_of(self, prefix: str) -> list[str]:
        """The file names (data, index, meta) of the checkpoint at `prefix` in this directory."""
        name = prefix.rsplit("/", 1)[-1]
        return [f for f in self._listdir() if naming.is_checkpoint_file(f, name)]

    # --- Writing ---------------------------------------------------------------------

    def write_state(self, checkpoints: list[CheckpointInfo], latest: int | None) -> None:
        """Atomically point the `checkpoint` state file at step `latest`.

        `checkpoints` are all those kept; `latest` goes last, as TF expects.
        With no checkpoint left the state file is removed: one naming nothing
        makes `tf.train.get_checkpoint_state` raise.
        """
        if latest is None:
            with contextlib.suppress(tf.errors.NotFoundError):
                self.files.remove(self.state_path)
            return
        basename = self._require_basename()
        checkpoints = sorted(checkpoints, key=lambda c: (c.step == latest, c.step))
        state = checkpoint_state_pb2.CheckpointState(
            model_checkpoint_path=f"{basename}-{latest}",
            all_model_checkpoint_paths=[f"{basename}-{c.step}" for c in checkpoints],
            all_model_checkpoint_timestamps=[c.timestamp for c in checkpoints],
        )
        atomic_write(self.state_path, text_format.MessageToString(state).encode())

    @property
    def spare_path(self) -> str:
        """Where `delete(..., spare=True)` keeps a data file (see `CheckpointSaver`)."""
        return f"{self.directory}/{self._require_basename()}{naming.SPARE_SUFFIX}"

    def delete(self, step: int, *, spare: bool = False) -> bool:
        """Remove every file of the checkpoint for `step`, index first.

        With `spare`, a single data file is renamed to `spare_path` (replacing
        an earlier spare) instead of removed: the checkpoint is gone all the
        same, since it has no index. The next save overwrites it only where
        no other name or open file shares it (`spare.claim`), else
        removes it, as `release_spare` does. Returns whether a spare was
        kept (a rename that fails is a removal).
        """
        names = self.files_of(self.prefix(step))
        names.sort(key=lambda name: not name.endswith(naming.INDEX_SUFFIX))
        data = [name for name in names if naming.DATA_INFIX in name]
        kept = False
        for name in names:
            path = f"{self.directory}/{name}"
            if spare and data == [name]:
                try:
                    self.files.rename(path, self.spare_path)
                    kept = True
                    continue
                except (tf.errors.OpError, OSError) as error:
                    logger.warning("Cannot keep %s as %s: %s", path, self.spare_path, error)
            with contextlib.suppress(tf.errors.NotFoundError):
                self.files.remove(path)
        return kept

    def release_spare(self) -> None:
        """Remove the spare data file, if there is one."""
        with contextlib.suppress(tf.errors.NotFoundError):
            self.files.remove(self.spare_path)

    def set_aside(self, prefix: str) -> str:
        """Rename an unreadable checkpoint out of the way; return its new prefix.

        A state file that named it is pointed at the newest checkpoint left, so
        that TensorFlow's own readers (`tf.train.latest_checkpoint`) find that one.
        """
        name = prefix.rsplit("/", 1)[-1]
        aside = prefix + naming.CORRUPT_INFIX
        for filename in self.files_of(prefix):
            tail = filename[len(name) :]
            self.files.rename(f"{self.directory}/{filename}", aside + tail)
        state = self.read_state(warn=False)  # a damaged one was reported when it was passed over
        if state is not None and state.model_checkpoint_path.rsplit("/", 1)[-1] == name:
            kept = self.list_checkpoints()
            self.write_state(kept, latest=kept[-1].step if kept else None)
        return aside

    def set_aside_all(self, time: str) -> str:
        """Move every checkpoint of this basename, its scores and the state file into a subdirectory.

        `time` names the subdirectory (`set-aside-<time>`); returns its path.
        Each checkpoint moves index last, and the state file after them all.
        A move killed midway (on an object store each rename is a copy, so
        the window is long) leaves the index, and so the checkpoint, here: a
        reader skips it as unreadable, and nothing deletes its files. Index
        first would leave data without an index here, which the next run's
        `remove_stale_temp_files` deletes as a killed upload's.
        """
        target = f"{self.directory}/{naming.SET_ASIDE_DIRECTORY.format(time=time)}"
        self.files.makedirs(target)
        for prefix in self.prefixes():
            names = self.files_of(prefix)
            names.sort(key=lambda name: name.endswith(naming.INDEX_SUFFIX))
            for name in names:
                self.files.rename(f"{self.directory}/{name}", f"{target}/{name}")
        # The scores (`keep_best`) go with the checkpoints they score.
        for name in (naming.SCORES_FILENAME, naming.STATE_FILENAME):
            if self.files.exists(f"{self.directory}/{name}"):
                self.files.rename(f"{self.directory}/{name}", f"{target}/{name}")
        return target

    def remove_stale_temp_files(self, *, keep_spare: bool = False) -> list[str]:
        """Delete what a crashed save left behind; never a finished checkpoint.

        `keep_spare`: the spare data file is the live one of this run's saver.
        """
        ours = re.compile(
            re.escape(self._require_basename()) + r"-\d+" + re.escape(naming.TEMP_INFIX)
        )
        single = {
            name + naming.TEMP_INFIX
            for name in [
                naming.STATE_FILENAME, naming.SCORES_FILENAME, *naming.GRAPH_DEF_FILENAMES.values()
            ]
        }
        if not keep_spare:
            single.add(self._require_basename() + naming.SPARE_SUFFIX)
        listing = self._listdir()
        stale = [name for name in listing if ours.match(name) or name in single]
        stale += self._unindexed(listing)
        for name in stale:
            path = f"{self.directory}/{name}"
            if self.files.isdir(path):
                self.files.rmtree(path)
            else:
                self.files.remove(path)
        return stale

    def _unindexed(self, listing: list[str]) -> list[str]:
        """Data and `.meta` files of a step with no index: an upload to an object store
        (which has no rename) that was killed before its index went up."""
        basename = self._require_basename()
        indexed = {
            match[0] for name in listing
            if (match := naming.checkpoint_file_step(name, basename)) is not None and match[1]
        }
        return [
            name for name in listing
            if (match := naming.checkpoint_file_step(name, basename)) is not None
            and match[0] not in indexed
        ]

    def check_free_space(self, nbytes: int) -> None:
        """Fail early when a local disk cannot hold `nbytes` more."""
        if not is_local(self.directory):
            return
        tf.io.gfile.makedirs(self.directory)
        free = shutil.disk_usage(self.directory).free
        if free < nbytes:
            raise CheckpointError(
                f"Cannot write a checkpoint to {self.directory}: it needs {nbytes:,} bytes and the "
                f"disk has {free:,} free. HINT: free space, lower checkpoint.max_to_keep or set "
                "checkpoint.max_total_bytes."
            )

    # --- Helpers ---------------------------------------------------------------------

    def _listdir(self) -> list[str]:
        if not self.files.isdir(self.directory):
            return []
        return self.files.listdir(self.directory)

    def _require_basename(self) -> str:
        if self.basename is None:
            raise ValueError("This CheckpointDirectory reads any basename; it writes none.")
        return self.basename
