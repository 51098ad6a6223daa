"""`CheckpointSaver` and `bundle.write_checkpoint`: publish, point the state file, prune, fail cleanly.

Unit tests with plain `tf.Variable`s and real files in `tmp_path`; no training.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import steps_on_disk
from tfcheckpointer.checkpoint import bundle_writer, spare
from tfcheckpointer.checkpoint.bundle import Snapshot, checkpoint_shapes, read_step, write_checkpoint
from tfcheckpointer.checkpoint.directory import CheckpointDirectory
from tfcheckpointer.checkpoint.policy import RetentionPolicy
from tfcheckpointer.checkpoint.saver import CheckpointSaver
from tfcheckpointer.errors import CheckpointError


def variables(step: int = 0, scale: float = 1.0) -> dict[str, tf.Variable]:
    return {
        "dense/kernel": tf.Variable(np.arange(6, dtype="float32").reshape(2, 3) * scale),
        "dense/bias": tf.Variable(np.full(3, scale, dtype="float32")),
        "counts": tf.Variable(np.arange(4, dtype="int32")),
        "global_step": tf.Variable(step, dtype=tf.int64),
    }


def snapshot_of(values: dict[str, tf.Variable]) -> Snapshot:
    keys = sorted(values)  # the order a Saver writes in
    return Snapshot(keys, [values[k].read_value() for k in keys])


def good(step: int) -> Snapshot:
    return snapshot_of(variables(step))


def broken(step: int) -> Snapshot:
    """A snapshot SaveV2 refuses: two names, one tensor."""
    return Snapshot(["global_step", "w"], [tf.constant(step, tf.int64)])


def saver_in(directory, max_to_keep: int | None = 2, **options) -> CheckpointSaver:
    return CheckpointSaver(
        CheckpointDirectory(str(directory), "model.ckpt"), RetentionPolicy(max_to_keep=max_to_keep), **options
    )



def contents(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def temp_files(directory) -> list[str]:
    return [name for name in os.listdir(directory) if ".tfcheckpointer-tmp" in name or "tempstate" in name]


# --- A save ------------------------------------------------------------------------------------


def test_a_save_publishes_the_bundle_and_reports_it(tmp_path):
    saved = saver_in(tmp_path).save(4, good(4))
    assert saved.step == 4 and saved.prefix == f"{tmp_path}/model.ckpt-4"
    assert saved.bytes == sum(
        p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("model.ckpt-4.")
    )
    assert saved.seconds >= 0
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint", "model.ckpt-4.data-00000-of-00001", "model.ckpt-4.index",
    ]
    assert read_step(saved.prefix) == (4, "global_step")
    reader = tf.train.load_checkpoint(saved.prefix)
    np.testing.assert_array_equal(reader.get_tensor("dense/kernel"), variables()["dense/kernel"].numpy())


def test_a_save_points_the_state_file_at_it_with_relative_paths(tmp_path):
    saver = saver_in(tmp_path, max_to_keep=None)
    saver.save(4, good(4))
    saver.save(8, good(8))
    text = (tmp_path / "checkpoint").read_text()
    assert 'model_checkpoint_path: "model.ckpt-8"\n' in text
    assert re.findall(r'all_model_checkpoint_paths: "(.*)"', text) == ["model.ckpt-4", "model.ckpt-8"]
    assert str(tmp_path) not in text
    assert tf.train.latest_checkpoint(str(tmp_path)) == f"{tmp_path}/model.ckpt-8"


def test_a_save_prunes_to_max_to_keep_including_an_earlier_runs_checkpoints(tmp_path):
    saver_in(tmp_path, max_to_keep=None).save(1, good(1))  # an earlier run, which kept all
    saver_in(tmp_path, max_to_keep=None).save(2, good(2))
    saver = saver_in(tmp_path, max_to_keep=2)
    saver.save(3, good(3))
    assert steps_on_disk(tmp_path) == [2, 3]
    saver.save(4, good(4))
    assert steps_on_disk(tmp_path) == [3, 4]
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert list(state.all_model_checkpoint_paths) == [f"{tmp_path}/model.ckpt-3", f"{tmp_path}/model.ckpt-4"]
    assert state.model_checkpoint_path == f"{tmp_path}/model.ckpt-4"


def test_a_save_below_an_earlier_runs_steps_is_kept_and_becomes_the_latest(tmp_path):
    earlier = saver_in(tmp_path, max_to_keep=None)
    earlier.save(10, good(10))
    earlier.save(12, good(12))
    saver_in(tmp_path, max_to_keep=2).save(3, good(3))
    assert 3 in steps_on_disk(tmp_path)
    assert tf.train.latest_checkpoint(str(tmp_path)) == f"{tmp_path}/model.ckpt-3"


def test_saving_a_step_again_replaces_its_files(tmp_path):
    saver = saver_in(tmp_path)
    saver.save(4, snapshot_of(variables(4, scale=1.0)))
    saver.save(4, snapshot_of(variables(4, scale=5.0)))
    assert steps_on_disk(tmp_path) == [4]
    np.testing.assert_array_equal(
        tf.train.load_checkpoint(str(tmp_path / "model.ckpt-4")).get_tensor("dense/bias"), [5.0, 5.0, 5.0]
    )
    assert tf.train.latest_checkpoint(str(tmp_path)) == f"{tmp_path}/model.ckpt-4"


def test_extra_files_are_written_beside_the_checkpoint(tmp_path):
    saver = saver_in(tmp_path, extra_files={".meta": b"a MetaGraphDef"})
    saved = saver.save(5, good(5))
    assert (tmp_path / "model.ckpt-5.meta").read_bytes() == b"a MetaGraphDef"
    assert saved.bytes == sum(
        p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("model.ckpt-5.")
    )
    assert not temp_files(tmp_path)


def test_pruning_removes_a_checkpoints_extra_files_too(tmp_path):
    saver = saver_in(tmp_path, max_to_keep=1, extra_files={".meta": b"meta"})
    saver.save(1, good(1))
    saver.save(2, good(2))
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint", "model.ckpt-2.data-00000-of-00001", "model.ckpt-2.index", "model.ckpt-2.meta",
    ]


def test_max_total_bytes_drops_the_oldest_checkpoints_by_their_size_on_disk(tmp_path):
    size = saver_in(tmp_path / "probe").save(1, good(1)).bytes
    saver = CheckpointSaver(
        CheckpointDirectory(str(tmp_path), "model.ckpt"), RetentionPolicy(max_total_bytes=size * 5 // 2)
    )
    for step in range(1, 5):
        saver.save(step, good(step))
    assert steps_on_disk(tmp_path) == [3, 4]


def test_max_total_bytes_always_keeps_the_newest(tmp_path):
    saver = CheckpointSaver(CheckpointDirectory(str(tmp_path), "model.ckpt"), RetentionPolicy(max_total_bytes=1))
    saver.save(1, good(1))
    saver.save(2, good(2))
    assert steps_on_disk(tmp_path) == [2]
    assert tf.train.latest_checkpoint(str(tmp_path)) == f"{tmp_path}/model.ckpt-2"


# --- The spare data file -------------------------------------------------------------------------

SPARE = "model.ckpt.tfcheckpointer-spare"
DATA = ".data-00000-of-00001"


def test_a_deleted_checkpoints_data_file_waits_as_the_spare_until_the_next_save(tmp_path):
    saver = saver_in(tmp_path, max_to_keep=1, spare=True)
    saver.save(1, snapshot_of(variables(1, scale=1.0)))
    first = (tmp_path / f"model.ckpt-1{DATA}").read_bytes()
    saver.save(2, snapshot_of(variables(2, scale=2.0)))
    second = (tmp_path / f"model.ckpt-2{DATA}").read_bytes()
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint", f"model.ckpt-2{DATA}", "model.ckpt-2.index", SPARE,
    ]
    assert (tmp_path / SPARE).read_bytes() == first
    assert steps_on_disk(tmp_path) == [2]  # the spare is no checkpoint
    assert list(tf.train.get_checkpoint_state(str(tmp_path)).all_model_checkpoint_paths) == [
        f"{tmp_path}/model.ckpt-2"
    ]
    saver.save(3, snapshot_of(variables(3, scale=3.0)))
    assert (tmp_path / SPARE).read_bytes() == second  # one spare: the last deleted
    saver.release_spare()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", f"model.ckpt-3{DATA}", "model.ckpt-3.index"]


def test_the_next_save_overwrites_the_spare_in_place(tmp_path):
    """The point of the spare: the write lands in pages (and blocks) already in place."""
    saver = saver_in(tmp_path, max_to_keep=1, spare=True)
    saver.save(1, good(1))
    saver.save(2, snapshot_of(variables(2, scale=2.0)))
    spare_inode = (tmp_path / SPARE).stat().st_ino
    second_inode = (tmp_path / f"model.ckpt-2{DATA}").stat().st_ino
    values = variables(3, scale=3.0)
    saver.save(3, snapshot_of(values))
    assert (tmp_path / f"model.ckpt-3{DATA}").stat().st_ino == spare_inode
    assert (tmp_path / SPARE).stat().st_ino == second_inode
    # The same bytes as a new file's, read back through TensorFlow's own reader.
    write_checkpoint(str(tmp_path / "fresh" / "model.ckpt-3"), snapshot_of(values))
    assert (tmp_path / f"model.ckpt-3{DATA}").read_bytes() == (tmp_path / "fresh" / f"model.ckpt-3{DATA}").read_bytes()
    reader = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-3"))
    for key, variable in values.items():
        np.testing.assert_array_equal(reader.get_tensor(key), variable.numpy())


def test_a_longer_spare_is_cut_to_the_new_length(tmp_path):
    (tmp_path / "spare").write_bytes(b"\xff" * 10_000)
    keys, arrays = ["a", "b"], [np.arange(5, dtype="float32"), np.arange(3, dtype="int64")]
    claim = spare.claim(str(tmp_path / "spare"))
    bundle_writer.write_bundle(str(tmp_path / "reused"), keys, arrays, reuse=claim)
    bundle_writer.write_bundle(str(tmp_path / "fresh"), keys, arrays)
    assert not (tmp_path / "spare").exists()
    assert (tmp_path / f"reused{DATA}").read_bytes() == (tmp_path / f"fresh{DATA}").read_bytes()
    assert (tmp_path / f"reused{DATA}").stat().st_size == 5 * 4 + 3 * 8


READER = """
import json, sys
import tensorflow as tf
reader = tf.train.load_checkpoint(sys.argv[1])
reader.get_tensor("counts")  # opens the data file, which the reader keeps open
print("open", flush=True)
sys.stdin.readline()
print(json.dumps({k: reader.get_tensor(k).tolist() for k in ("dense/kernel", "dense/bias", "global_step")}))
"""


def test_a_reader_still_holding_a_deleted_checkpoint_keeps_its_bytes(tmp_path):
    """An evaluator in another process restoring checkpoint 1 while training deletes it:
    its open data file is not overwritten (TensorFlow's reader checks each tensor's CRC)."""
    saver = saver_in(tmp_path, max_to_keep=1, spare=True)
    saver.save(1, good(1))
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path / "model.ckpt-1")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        assert reader.stdout.readline() == "open\n", reader.stderr.read()
        first_inode = (tmp_path / f"model.ckpt-1{DATA}").stat().st_ino
        for step in (2, 3):
            saver.save(step, snapshot_of(variables(step, scale=float(step))))
        # Step 3 was handed step 1's file as the spare: it wrote a new one instead.
        assert (tmp_path / f"model.ckpt-3{DATA}").stat().st_ino != first_inode
        saver.save(4, snapshot_of(variables(4, scale=4.0)))  # takes over step 2's, unread
        out, err = reader.communicate("go\n", timeout=60)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    assert json.loads(out) == {
        "dense/kernel": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], "dense/bias": [1.0] * 3, "global_step": 1,
    }
    assert steps_on_disk(tmp_path) == [4]
    np.testing.assert_array_equal(tf.train.load_checkpoint(str(tmp_path / "model.ckpt-4")).get_tensor("dense/bias"), [4.0] * 3)


def test_a_hard_link_to_a_deleted_data_file_keeps_its_bytes(tmp_path):
    """An export hard-links its source checkpoint: a spare with a second name is never overwritten."""
    saver = saver_in(tmp_path / "ckpt", max_to_keep=1, spare=True)
    saver.save(1, good(1))
    os.link(tmp_path / "ckpt" / f"model.ckpt-1{DATA}", tmp_path / "exported.data")
    kept = (tmp_path / "exported.data").read_bytes()
    for step in (2, 3, 4):
        saver.save(step, snapshot_of(variables(step, scale=float(step))))
    saver.release_spare()
    assert (tmp_path / "exported.data").read_bytes() == kept


def test_a_spare_that_cannot_be_opened_is_not_claimed_and_never_raises(tmp_path, caplog):
    (tmp_path / "spare").mkdir()  # opening it for writing fails; so does removing it as a file
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        assert spare.claim(str(tmp_path / "spare")) is None
    assert "Cannot remove" in caplog.text
    assert spare.claim(str(tmp_path / "absent")) is None


def test_a_spare_on_a_filesystem_other_readers_may_share_is_not_claimed(tmp_path, monkeypatch):
    """On NFS or FUSE a reader on another host is invisible here: no overwriting there."""
    assert spare.filesystem_type(str(tmp_path)) in spare.LOCAL_FILESYSTEMS
    assert spare.filesystem_type("/proc/self") == "proc"
    (tmp_path / "spare").write_bytes(b"old")
    monkeypatch.setattr(spare, "LOCAL_FILESYSTEMS", frozenset())  # as if tmp_path were a network mount
    assert spare.claim(str(tmp_path / "spare")) is None
    assert not (tmp_path / "spare").exists()


def test_a_spare_that_is_a_symbolic_link_is_never_written_through(tmp_path):
    """A data file symlinked to another disk: its target is someone else's file."""
    (tmp_path / "elsewhere").write_bytes(b"precious")
    os.symlink(tmp_path / "elsewhere", tmp_path / "spare")
    assert spare.claim(str(tmp_path / "spare")) is None
    assert not os.path.lexists(tmp_path / "spare")
    assert (tmp_path / "elsewhere").read_bytes() == b"precious"


def test_a_spare_replaced_after_its_claim_is_not_published(tmp_path):
    """Our bytes must go to the file that is published, not to an orphaned one."""
    (tmp_path / "spare").write_bytes(b"old")
    claim = spare.claim(str(tmp_path / "spare"))
    (tmp_path / "other").write_bytes(b"someone else's")
    os.replace(tmp_path / "other", tmp_path / "spare")
    with pytest.raises(OSError, match="not the spare data file claimed for it"):
        claim.move_to(str(tmp_path / "data"))
    claim.discard()
    assert not (tmp_path / "data").exists() or (tmp_path / "data").read_bytes() == b"someone else's"


def test_a_claimed_spare_left_by_a_failed_save_is_removed(tmp_path):
    saver = saver_in(tmp_path, max_to_keep=1, spare=True)
    saver.save(1, good(1))
    saver.save(2, good(2))
    assert (tmp_path / SPARE).exists()
    with pytest.raises(CheckpointError):
        saver.save(3, broken(3))  # SaveV2 refuses it: the claimed spare goes all the same
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", f"model.ckpt-2{DATA}", "model.ckpt-2.index"]
    assert not saver.holds_spare


def test_only_a_local_directory_keeps_a_spare(tmp_path):
    assert saver_in(tmp_path, spare=True).spare
    assert not saver_in(tmp_path).spare
    assert not CheckpointSaver(
        CheckpointDirectory("s3://bucket/run", "model.ckpt"), RetentionPolicy(max_to_keep=1), spare=True
    ).spare


# --- Byte-identical to a Saver -------------------------------------------------------------------


def test_files_are_byte_identical_to_a_tf1_savers(tmp_path):
    values = variables(7)
    write_checkpoint(str(tmp_path / "ours" / "model.ckpt-7"), snapshot_of(values))
    os.makedirs(tmp_path / "saver")
    tf.compat.v1.train.Saver(var_list=values, save_relative_paths=True).save(
        None, str(tmp_path / "saver" / "model.ckpt-7"), write_meta_graph=False, write_state=False
    )
    assert sorted(os.listdir(tmp_path / "ours")) == sorted(os.listdir(tmp_path / "saver"))
    for suffix in (".index", ".data-00000-of-00001"):
        ours = (tmp_path / "ours" / f"model.ckpt-7{suffix}").read_bytes()
        assert ours == (tmp_path / "saver" / f"model.ckpt-7{suffix}").read_bytes(), suffix


def test_a_tf1_saver_restores_what_the_saver_wrote(tmp_path):
    saver_in(tmp_path).save(3, snapshot_of(variables(3, scale=2.0)))
    fresh = variables(0, scale=0.0)
    tf.compat.v1.train.Saver(var_list=fresh).restore(None, tf.train.latest_checkpoint(str(tmp_path)))
    for key, value in variables(3, scale=2.0).items():
        np.testing.assert_array_equal(fresh[key].numpy(), value.numpy(), err_msg=key)


# --- Failures ---------------------------------------------------------------------------------------


def test_a_failed_write_raises_a_checkpoint_error_naming_the_prefix(tmp_path):
    with pytest.raises(
        CheckpointError,
        match=rf"^Cannot write checkpoint {re.escape(str(tmp_path))}/model\.ckpt-4: .*Got 2 tensor names but 1 tensors",
    ):
        saver_in(tmp_path).save(4, broken(4))
    assert not temp_files(tmp_path)


def test_a_failed_write_leaves_earlier_checkpoints_and_the_state_file_untouched(tmp_path):
    saver = saver_in(tmp_path, max_to_keep=2, extra_files={".meta": b"meta"})
    saver.save(4, good(4))
    saver.save(8, good(8))
    before = contents(tmp_path)
    with pytest.raises(CheckpointError, match=r"Cannot write checkpoint .*/model\.ckpt-12: "):
        saver.save(12, broken(12))
    assert contents(tmp_path) == before
    assert not temp_files(tmp_path)
    assert tf.train.latest_checkpoint(str(tmp_path)) == f"{tmp_path}/model.ckpt-8"


def test_a_failed_rewrite_of_the_only_checkpoint_leaves_no_state_file_pointing_nowhere(tmp_path):
    """Regression: the state file once named a checkpoint that a failed rewrite had removed."""
    saver = saver_in(tmp_path)
    saver.save(4, good(4))
    with pytest.raises(CheckpointError, match=r"Cannot write checkpoint .*/model\.ckpt-4: "):
        saver.save(4, broken(4))
    state = tf.train.get_checkpoint_state(str(tmp_path))  # raises on a state file naming nothing
    latest = tf.train.latest_checkpoint(str(tmp_path))
    assert state is None or tf.io.gfile.exists(state.model_checkpoint_path + ".index")
    assert latest is None or tf.io.gfile.exists(latest + ".index")
    assert not temp_files(tmp_path)


def test_a_failed_rewrite_points_the_state_file_at_the_newest_other_checkpoint(tmp_path):
    saver = saver_in(tmp_path, max_to_keep=None)
    saver.save(2, good(2))
    saver.save(6, good(6))
    saver.save(4, good(4))  # a restart that went back, now the latest
    with pytest.raises(CheckpointError, match=r"Cannot write checkpoint .*/model\.ckpt-4: "):
        saver.save(4, broken(4))
    assert steps_on_disk(tmp_path) == [2, 6]
    assert tf.train.latest_checkpoint(str(tmp_path)) == f"{tmp_path}/model.ckpt-6"
    assert not temp_files(tmp_path)


def test_a_directory_that_is_a_file_fails_with_a_checkpoint_error(tmp_path):
    (tmp_path / "ckpt").write_text("a file where the directory should be")
    with pytest.raises(CheckpointError, match=rf"^Cannot write checkpoint {re.escape(str(tmp_path))}/ckpt/model\.ckpt-1: "):
        saver_in(tmp_path / "ckpt").save(1, good(1))
    assert (tmp_path / "ckpt").read_text() == "a file where the directory should be"


def test_write_checkpoint_creates_the_directory_and_checks_every_key(tmp_path):
    prefix = str(tmp_path / "a" / "b" / "model.ckpt-2")
    seconds = write_checkpoint(prefix, good(2))
    assert seconds >= 0
    assert checkpoint_shapes(prefix) == {
        "counts": [4], "dense/bias": [3], "dense/kernel": [2, 3], "global_step": [],
    }
