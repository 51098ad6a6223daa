"""`CheckpointDirectory`: which checkpoints a directory holds, the latest one, its state file.

Unit tests over real TensorFlow files in `tmp_path`, written with the bundle
writer or with a real `tf.compat.v1.train.Saver`; no training.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from tfcheckpointer.checkpoint.bundle import Snapshot, write_checkpoint
from tfcheckpointer.checkpoint.directory import CheckpointDirectory
from tfcheckpointer.checkpoint.policy import CheckpointInfo

BASENAME = "model.ckpt"


def write_steps(directory, *steps: int, basename: str = BASENAME) -> None:
    """Complete checkpoints `<basename>-<step>` holding a scalar `global_step`."""
    for step in steps:
        snapshot = Snapshot(["global_step"], [tf.constant(step, tf.int64)])
        write_checkpoint(f"{directory}/{basename}-{step}", snapshot)


def write_state_text(directory, text: str) -> None:
    (directory / "checkpoint").write_text(text)


def ours(directory) -> CheckpointDirectory:
    return CheckpointDirectory(str(directory), BASENAME)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tfcheckpointer" and r.levelno == logging.WARNING]


# --- candidates() / latest() ------------------------------------------------------------------


def test_state_file_pick_comes_first_even_below_the_highest_step(tmp_path):
    write_steps(tmp_path, 4, 8, 12)
    write_state_text(tmp_path, 'model_checkpoint_path: "model.ckpt-8"\n')
    assert ours(tmp_path).candidates() == [
        f"{tmp_path}/model.ckpt-8", f"{tmp_path}/model.ckpt-12", f"{tmp_path}/model.ckpt-4",
    ]
    assert ours(tmp_path).latest() == f"{tmp_path}/model.ckpt-8"


def test_without_a_state_file_the_highest_step_wins(tmp_path):
    write_steps(tmp_path, 9, 10, 2)
    assert ours(tmp_path).candidates() == [
        f"{tmp_path}/model.ckpt-10", f"{tmp_path}/model.ckpt-9", f"{tmp_path}/model.ckpt-2",
    ]
    assert ours(tmp_path).latest() == f"{tmp_path}/model.ckpt-10"


def test_an_empty_directory_has_no_latest(tmp_path):
    assert ours(tmp_path).candidates() == []
    assert ours(tmp_path).latest() is None
    assert ours(tmp_path / "absent").latest() is None


def test_a_state_file_naming_a_checkpoint_not_on_disk_falls_back_to_the_highest_step(tmp_path):
    write_steps(tmp_path, 4, 8)
    write_state_text(tmp_path, 'model_checkpoint_path: "model.ckpt-16"\n')
    assert ours(tmp_path).latest() == f"{tmp_path}/model.ckpt-8"


def write_other_savers_best_99(directory) -> None:
    """A user's own TF1 Saver writes `best-99` into the directory and its state file."""
    with tf.Graph().as_default():
        v = tf.compat.v1.get_variable("v", [1])
        saver = tf.compat.v1.train.Saver([v])
        with tf.compat.v1.Session() as session:
            session.run(v.initializer)
            saver.save(session, str(directory / "best"), global_step=99, write_meta_graph=False)


def test_another_savers_entry_is_ignored_when_a_basename_is_given(tmp_path):
    write_steps(tmp_path, 4, 8)
    write_other_savers_best_99(tmp_path)
    assert tf.train.latest_checkpoint(str(tmp_path)) == f"{tmp_path}/best-99"
    assert ours(tmp_path).candidates() == [f"{tmp_path}/model.ckpt-8", f"{tmp_path}/model.ckpt-4"]


def test_without_a_basename_any_named_checkpoint_counts(tmp_path):
    write_steps(tmp_path, 4, 8)
    write_other_savers_best_99(tmp_path)
    write_steps(tmp_path, 100, basename="other")
    # The state file's pick (best-99) first, then every `<name>-<step>` by step.
    assert CheckpointDirectory(str(tmp_path)).candidates() == [
        f"{tmp_path}/best-99", f"{tmp_path}/other-100", f"{tmp_path}/model.ckpt-8",
        f"{tmp_path}/model.ckpt-4",
    ]


def test_without_a_basename_the_highest_step_of_any_name_wins_with_no_state_file(tmp_path):
    write_steps(tmp_path, 4)
    write_steps(tmp_path, 3, basename="other")
    assert CheckpointDirectory(str(tmp_path)).latest() == f"{tmp_path}/model.ckpt-4"


def test_a_garbage_state_file_is_ignored_with_a_warning(tmp_path, caplog):
    write_steps(tmp_path, 4, 8)
    write_state_text(tmp_path, "this is {{ not a CheckpointState\n")
    directory = ours(tmp_path)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        assert directory.read_state() is None
        assert directory.latest() == f"{tmp_path}/model.ckpt-8"
    assert warnings_of(caplog)
    assert all(w.startswith(f"Ignoring {tmp_path}/checkpoint: ") for w in warnings_of(caplog))


def test_an_undecodable_state_file_is_ignored_with_a_warning(tmp_path, caplog):
    write_steps(tmp_path, 4)
    (tmp_path / "checkpoint").write_bytes(b"\xff\xfe\x00garbage")
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        assert ours(tmp_path).latest() == f"{tmp_path}/model.ckpt-4"
    assert warnings_of(caplog) and warnings_of(caplog)[0].startswith(f"Ignoring {tmp_path}/checkpoint: ")


def test_an_empty_state_file_is_ignored_with_a_warning(tmp_path, caplog):
    write_steps(tmp_path, 4, 8)
    write_state_text(tmp_path, "")
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        assert ours(tmp_path).latest() == f"{tmp_path}/model.ckpt-8"
    assert warnings_of(caplog) == [f"Ignoring {tmp_path}/checkpoint: it names no checkpoint."]


def test_a_state_file_with_absolute_paths_of_a_moved_directory_resolves_here(tmp_path):
    write_steps(tmp_path, 4, 8)
    write_state_text(
        tmp_path,
        'model_checkpoint_path: "/somewhere/else/run/model.ckpt-4"\n'
        'all_model_checkpoint_paths: "/somewhere/else/run/model.ckpt-8"\n'
        'all_model_checkpoint_paths: "/somewhere/else/run/model.ckpt-4"\n',
    )
    assert ours(tmp_path).latest() == f"{tmp_path}/model.ckpt-4"


def test_a_trailing_slash_on_the_directory_does_not_change_the_prefixes(tmp_path):
    write_steps(tmp_path, 4)
    assert CheckpointDirectory(f"{tmp_path}/", BASENAME).latest() == f"{tmp_path}/model.ckpt-4"


# --- list_checkpoints() -------------------------------------------------------------------------


def test_list_checkpoints_counts_complete_checkpoints_of_the_basename_oldest_first(tmp_path):
    write_steps(tmp_path, 12, 4)
    write_steps(tmp_path, 7, basename="other")
    (tmp_path / "model.ckpt-20.data-00000-of-00001").write_bytes(b"no index: not complete")
    listed = ours(tmp_path).list_checkpoints()
    assert [c.step for c in listed] == [4, 12]
    for info in listed:
        files = [p for p in tmp_path.iterdir() if p.name.startswith(f"model.ckpt-{info.step}.")]
        assert info.bytes == sum(p.stat().st_size for p in files)
        assert abs(info.timestamp - (tmp_path / f"model.ckpt-{info.step}.index").stat().st_mtime) < 2


# --- write_state() ------------------------------------------------------------------------------


def test_write_state_points_at_latest_with_relative_paths_latest_last(tmp_path):
    write_steps(tmp_path, 4, 8, 12)
    directory = ours(tmp_path)
    directory.write_state([CheckpointInfo(12, 3.0), CheckpointInfo(4, 1.0), CheckpointInfo(8, 2.0)], latest=8)
    assert (tmp_path / "checkpoint").read_text() == (
        'model_checkpoint_path: "model.ckpt-8"\n'
        'all_model_checkpoint_paths: "model.ckpt-4"\n'
        'all_model_checkpoint_paths: "model.ckpt-12"\n'
        'all_model_checkpoint_paths: "model.ckpt-8"\n'
        "all_model_checkpoint_timestamps: 1.0\n"
        "all_model_checkpoint_timestamps: 3.0\n"
        "all_model_checkpoint_timestamps: 2.0\n"
    )
    assert tf.train.latest_checkpoint(str(tmp_path)) == f"{tmp_path}/model.ckpt-8"
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert list(state.all_model_checkpoint_paths) == [
        f"{tmp_path}/model.ckpt-4", f"{tmp_path}/model.ckpt-12", f"{tmp_path}/model.ckpt-8",
    ]


def test_write_state_with_no_latest_removes_the_state_file(tmp_path):
    write_steps(tmp_path, 4)
    directory = ours(tmp_path)
    directory.write_state([CheckpointInfo(4, 1.0)], latest=4)
    assert (tmp_path / "checkpoint").exists()
    directory.write_state([], latest=None)
    assert not (tmp_path / "checkpoint").exists()
    assert tf.train.get_checkpoint_state(str(tmp_path)) is None
    assert tf.train.latest_checkpoint(str(tmp_path)) is None


def test_write_state_with_no_latest_and_no_state_file_is_a_no_op(tmp_path):
    ours(tmp_path).write_state([], latest=None)
    assert os.listdir(tmp_path) == []


def test_write_state_leaves_no_temporary_file(tmp_path):
    write_steps(tmp_path, 4)
    ours(tmp_path).write_state([CheckpointInfo(4, 1.0)], latest=4)
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint", "model.ckpt-4.data-00000-of-00001", "model.ckpt-4.index",
    ]


# --- remove_stale_temp_files() --------------------------------------------------------------------


def test_remove_stale_temp_files_removes_a_crashed_saves_files_but_no_checkpoint(tmp_path):
    write_steps(tmp_path, 8)
    (tmp_path / "model.ckpt-8.meta").write_bytes(b"meta")
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-8"\n')
    stale = [
        "model.ckpt-12.tfcheckpointer-tmp.index",
        "model.ckpt-12.tfcheckpointer-tmp.meta",
        "model.ckpt-12.tfcheckpointer-tmp.data-00000-of-00001.tempstate123456",
        "checkpoint.tfcheckpointer-tmp",
        "graph.pbtxt.tfcheckpointer-tmp",
    ]
    for name in stale:
        (tmp_path / name).write_bytes(b"half written")
    removed = ours(tmp_path).remove_stale_temp_files()
    assert sorted(removed) == sorted(stale)
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint", "model.ckpt-8.data-00000-of-00001", "model.ckpt-8.index", "model.ckpt-8.meta",
    ]


def test_remove_stale_temp_files_removes_a_temporary_directory(tmp_path):
    (tmp_path / "model.ckpt-3.tfcheckpointer-tmp_temp").mkdir()
    (tmp_path / "model.ckpt-3.tfcheckpointer-tmp_temp" / "part-00000").write_bytes(b"x")
    assert ours(tmp_path).remove_stale_temp_files() == ["model.ckpt-3.tfcheckpointer-tmp_temp"]
    assert os.listdir(tmp_path) == []


def test_remove_stale_temp_files_leaves_another_basenames_temp_files(tmp_path):
    (tmp_path / "best-3.tfcheckpointer-tmp.index").write_bytes(b"x")
    (tmp_path / "model.ckpt-best.tfcheckpointer-tmp.index").write_bytes(b"x")
    assert ours(tmp_path).remove_stale_temp_files() == []
    assert sorted(os.listdir(tmp_path)) == [
        "best-3.tfcheckpointer-tmp.index", "model.ckpt-best.tfcheckpointer-tmp.index",
    ]


def test_remove_stale_temp_files_of_a_missing_directory_is_empty(tmp_path):
    assert ours(tmp_path / "absent").remove_stale_temp_files() == []


# --- set_aside() / delete() / files_of() ------------------------------------------------------------


def test_set_aside_renames_every_file_of_the_checkpoint_to_corrupt(tmp_path):
    write_steps(tmp_path, 8, 80)
    (tmp_path / "model.ckpt-8.meta").write_bytes(b"meta")
    directory = ours(tmp_path)
    aside = directory.set_aside(f"{tmp_path}/model.ckpt-8")
    assert aside == f"{tmp_path}/model.ckpt-8.corrupt"
    assert sorted(os.listdir(tmp_path)) == [
        "model.ckpt-8.corrupt.data-00000-of-00001", "model.ckpt-8.corrupt.index",
        "model.ckpt-8.corrupt.meta",
        "model.ckpt-80.data-00000-of-00001", "model.ckpt-80.index",
    ]
    assert [c.step for c in directory.list_checkpoints()] == [80]
    assert directory.candidates() == [f"{tmp_path}/model.ckpt-80"]
    # Still a readable bundle under its new name.
    assert tf.train.load_checkpoint(aside).get_tensor("global_step") == 8


def test_files_of_a_prefix_does_not_take_a_longer_steps_files(tmp_path):
    write_steps(tmp_path, 8, 80)
    assert sorted(ours(tmp_path).files_of(f"{tmp_path}/model.ckpt-8")) == [
        "model.ckpt-8.data-00000-of-00001", "model.ckpt-8.index",
    ]


def test_delete_removes_every_file_of_one_step_only(tmp_path):
    write_steps(tmp_path, 8, 80)
    (tmp_path / "model.ckpt-8.meta").write_bytes(b"meta")
    ours(tmp_path).delete(8)
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt-80.data-00000-of-00001", "model.ckpt-80.index"]


class _KilledAfterOneRename:
    """The directory's file layer, for a process killed after its first rename."""

    def __init__(self, files):
        self.files = files
        self.renamed = False

    def __getattr__(self, name):
        return getattr(self.files, name)

    def rename(self, source, target):
        if self.renamed:
            raise KeyboardInterrupt("killed")
        self.renamed = True
        self.files.rename(source, target)


def test_a_set_aside_killed_midway_loses_no_file_to_the_next_runs_cleanup(tmp_path):
    write_steps(tmp_path, 2)
    names = sorted(os.listdir(tmp_path))
    directory = ours(tmp_path)
    directory.files = _KilledAfterOneRename(directory.files)
    try:
        directory.set_aside_all("20260101T000000")
    except KeyboardInterrupt:
        pass
    ours(tmp_path).remove_stale_temp_files()  # the next run
    aside = tmp_path / "set-aside-20260101T000000"
    assert sorted(os.listdir(tmp_path) + os.listdir(aside)) == sorted([*names, aside.name])
