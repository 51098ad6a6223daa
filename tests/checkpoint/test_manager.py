"""`CheckpointManager` driven by hand with plain `tf.Variable`s: cadence, end, restore, errors, async, signals.

No Keras model and no `fit`: the test plays the training loop, calling
`start`, `on_step` and `on_end` and moving the variables itself.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import threading

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import steps_on_disk
from tfcheckpointer.checkpoint.manager import CheckpointManager
from tfcheckpointer.config import CheckpointConfig
from tfcheckpointer.errors import CheckpointError, RestoreMismatchError



def checkpoint_files(directory) -> dict[str, int]:
    """Name and modification time of each checkpoint file and the state file (not the lock)."""
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir() if p.name != ".tfcheckpointer.lock"}


def make_variables(weights=(0.0, 0.0, 0.0)) -> dict[str, tf.Variable]:
    return {
        "w": tf.Variable(np.array(weights, dtype="float32")),
        "global_step": tf.Variable(0, dtype=tf.int64),
    }


def train_to(variables: dict[str, tf.Variable], step: int) -> None:
    """What a training step does to the variables: move the weights and the step."""
    variables["w"].assign(np.full(3, float(step), dtype="float32"))
    variables["global_step"].assign(step)


@pytest.fixture
def managers():
    """Build managers (no signal handlers unless asked) and close every one afterwards."""
    made: list[CheckpointManager] = []

    def make(directory, *, clock=None, announce=None, **options) -> CheckpointManager:
        options.setdefault("save_on_signals", ())
        config = CheckpointConfig(directory=str(directory), **options)
        kwargs = {"announce": announce}
        if clock is not None:
            kwargs["clock"] = clock
        manager = CheckpointManager(config, **kwargs)
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()


@pytest.fixture
def restore_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


# --- Cadence -------------------------------------------------------------------------------------


def test_on_step_saves_at_multiples_of_every_n_steps(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=3, max_to_keep=None)
    variables = make_variables()
    manager.start(variables, step=0)
    saved = []
    for step in range(1, 10):
        train_to(variables, step)
        if manager.on_step(step) is not None:
            saved.append(step)
    assert saved == [3, 6, 9]
    assert steps_on_disk(tmp_path) == [3, 6, 9]
    for step in (3, 6, 9):
        reader = tf.train.load_checkpoint(str(tmp_path / f"model.ckpt-{step}"))
        assert reader.get_tensor("global_step") == step
        np.testing.assert_array_equal(reader.get_tensor("w"), [step] * 3)
    assert manager.last_checkpoint == f"{tmp_path}/model.ckpt-9"


def test_on_step_returns_what_was_saved(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=2)
    variables = make_variables()
    manager.start(variables, step=0)
    train_to(variables, 2)
    saved = manager.on_step(2)
    assert (saved.step, saved.prefix) == (2, f"{tmp_path}/model.ckpt-2")
    assert saved.bytes == sum(
        p.stat().st_size for p in tmp_path.iterdir() if p.name.startswith("model.ckpt-2.")
    )


def test_the_cadence_counts_from_the_step_given_to_start(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=4)
    variables = make_variables()
    manager.start(variables, step=6)  # a resumed run at step 6: next save at 8, not 10
    saved = []
    for step in range(7, 13):
        train_to(variables, step)
        if manager.on_step(step) is not None:
            saved.append(step)
    assert saved == [8, 12]


def test_max_to_keep_prunes_as_the_manager_saves(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=1, max_to_keep=2)
    variables = make_variables()
    manager.start(variables, step=0)
    for step in range(1, 6):
        train_to(variables, step)
        manager.on_step(step)
    assert steps_on_disk(tmp_path) == [4, 5]
    assert tf.train.latest_checkpoint(str(tmp_path)) == f"{tmp_path}/model.ckpt-5"


SPARE = "model.ckpt.tfcheckpointer-spare"
"""Where retention keeps the last deleted data file until the next save."""


def spare_after_each_step(tmp_path, manager, steps) -> list[bool]:
    variables = make_variables()
    manager.start(variables, step=0)
    spare = []
    for step in range(1, steps + 1):
        train_to(variables, step)
        manager.on_step(step)
        spare.append((tmp_path / SPARE).exists())
    return spare


def test_the_spare_data_file_lives_between_saves_and_goes_at_the_end(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=1, max_to_keep=2)
    assert spare_after_each_step(tmp_path, manager, 4) == [False, False, True, True]
    manager.on_end(4)
    assert not (tmp_path / SPARE).exists()
    assert steps_on_disk(tmp_path) == [3, 4]


def test_a_manager_that_kept_no_spare_leaves_anothers_alone(tmp_path, managers):
    """A process locked out, refused or never started must not touch the owner's spare."""
    save_steps(tmp_path, managers, 4)
    (tmp_path / SPARE).write_bytes(b"the live run's spare")
    managers(tmp_path, every_n_steps=4).close()  # never started
    refused = managers(tmp_path, every_n_steps=4)
    refused.start({"w": tf.Variable(np.zeros(4, "float32"))}, step=0)  # not the saved shape
    with pytest.raises(RestoreMismatchError):
        refused.restore()
    assert (tmp_path / SPARE).read_bytes() == b"the live run's spare"


def test_a_second_restore_in_the_same_run_keeps_the_live_spare(tmp_path, managers, caplog):
    """A TF1 session hook restores again when MonitoredSession recreates its session."""
    manager = managers(tmp_path, every_n_steps=1, max_to_keep=1)
    variables = make_variables()
    manager.start(variables, step=0)
    manager.restore()
    for step in (1, 2):
        train_to(variables, step)
        manager.on_step(step)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        manager.restore(current_step=2)
    assert (tmp_path / SPARE).exists()
    assert not [r for r in caplog.records if r.name == "tfcheckpointer"]


def test_a_spare_that_cannot_be_removed_never_stops_a_save(tmp_path, managers, caplog):
    (tmp_path / SPARE).mkdir()  # removing a file there fails; so does renaming onto it
    manager = managers(tmp_path, every_n_steps=1, max_to_keep=1)
    variables = make_variables()
    manager.start(variables, step=0)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        for step in (1, 2, 3):
            train_to(variables, step)
            manager.on_step(step)
        manager.on_end(3)
    assert manager.last_published_step == 3 and steps_on_disk(tmp_path) == [3]
    assert any(f"Cannot keep {tmp_path}/model.ckpt-1" in r.getMessage() for r in caplog.records)


def test_async_saves_hold_one_host_copy_of_the_state_until_the_end(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=1, max_to_keep=1, async_save=True)
    variables = make_variables()
    manager.start(variables, step=0)
    for step in (1, 2):
        train_to(variables, step)
        manager.on_step(step)
    # The snapshot was copied (not shared with the variables), so the step after it copies nothing.
    assert manager._staging.nbytes == 3 * 4 + 8
    manager.on_end(2)
    assert manager._staging.nbytes == 0
    np.testing.assert_array_equal(tf.train.load_checkpoint(str(tmp_path / "model.ckpt-2")).get_tensor("w"), [2.0] * 3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".tfcheckpointer.lock") == [
        "checkpoint", "model.ckpt-2.data-00000-of-00001", "model.ckpt-2.index",
    ]


@pytest.mark.parametrize("options", [{"spare_data_file": False}, {"max_total_bytes": 10**9}])
def test_no_spare_data_file_when_turned_off_or_under_a_byte_cap(tmp_path, managers, options):
    manager = managers(tmp_path, every_n_steps=1, max_to_keep=1, **options)
    assert spare_after_each_step(tmp_path, manager, 3) == [False, False, False]
    assert steps_on_disk(tmp_path) == [3]


def test_may_save_says_whether_on_step_would_save(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=5)
    manager.start(make_variables(), step=0)
    assert [s for s in range(1, 11) if manager.may_save(s)] == [5, 6, 7, 8, 9, 10]
    assert manager.on_step(5) is not None
    assert [s for s in range(5, 11) if manager.may_save(s)] == [10]
    assert steps_on_disk(tmp_path) == [5]  # asking saves nothing


def test_every_n_seconds_saves_once_the_injected_clock_has_moved_on(tmp_path, managers):
    now = [1000.0]
    manager = managers(tmp_path, every_n_seconds=60, clock=lambda: now[0])
    variables = make_variables()
    manager.start(variables, step=0)
    saved = []
    for step, seconds in [(1, 10), (2, 59), (3, 60), (4, 90), (5, 119), (6, 120), (7, 200)]:
        now[0] = 1000.0 + seconds
        train_to(variables, step)
        if manager.on_step(step) is not None:
            saved.append(step)
    assert saved == [3, 6, 7]
    assert steps_on_disk(tmp_path) == [3, 6, 7]


def test_every_n_seconds_does_not_save_when_the_step_did_not_move(tmp_path, managers):
    now = [0.0]
    manager = managers(tmp_path, every_n_seconds=10, clock=lambda: now[0])
    manager.start(make_variables(), step=3)
    now[0] = 100.0
    assert not manager.may_save(3)
    assert manager.on_step(3) is None
    assert steps_on_disk(tmp_path) == []


# --- End of training ---------------------------------------------------------------------------


def test_on_end_saves_the_final_step_once(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=4, max_to_keep=None)
    variables = make_variables()
    manager.start(variables, step=0)
    for step in range(1, 7):
        train_to(variables, step)
        manager.on_step(step)
    saved = manager.on_end(6)
    assert saved is not None and saved.step == 6
    assert steps_on_disk(tmp_path) == [4, 6]
    index = (tmp_path / "model.ckpt-6.index").stat().st_mtime_ns
    assert manager.on_end(6) is None
    assert steps_on_disk(tmp_path) == [4, 6]
    assert (tmp_path / "model.ckpt-6.index").stat().st_mtime_ns == index


def test_on_end_at_a_step_just_saved_writes_nothing_more(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=4)
    variables = make_variables()
    manager.start(variables, step=0)
    train_to(variables, 4)
    manager.on_step(4)
    before = checkpoint_files(tmp_path)
    assert manager.on_end(4) is None
    assert checkpoint_files(tmp_path) == before


def test_on_end_without_save_at_train_end_writes_nothing(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=4, save_at_train_end=False)
    variables = make_variables()
    manager.start(variables, step=0)
    train_to(variables, 3)
    assert manager.on_end(3) is None
    assert steps_on_disk(tmp_path) == []


def test_on_end_releases_the_directory_lock(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=4)
    variables = make_variables()
    manager.start(variables, step=0)
    assert (tmp_path / ".tfcheckpointer.lock").read_text()  # held: it names the holder
    train_to(variables, 1)
    manager.on_end(1)
    assert (tmp_path / ".tfcheckpointer.lock").read_text() == ""


def test_a_manager_never_started_can_be_closed(tmp_path, managers):
    manager = managers(tmp_path / "ckpt", every_n_steps=1, async_save=True, save_on_signals=("SIGTERM",))
    before = signal.getsignal(signal.SIGTERM)
    manager.close()
    manager.close()
    assert signal.getsignal(signal.SIGTERM) is before
    assert not (tmp_path / "ckpt").exists()


# --- Restore -------------------------------------------------------------------------------------


def test_restore_in_a_new_manager_brings_back_the_values_and_the_step(tmp_path, managers):
    first = managers(tmp_path, every_n_steps=5)
    variables = make_variables()
    first.start(variables, step=0)
    for step in range(1, 8):
        train_to(variables, step)
        first.on_step(step)
    first.on_end(7)

    announced: list[str] = []
    second = managers(tmp_path, every_n_steps=5, announce=announced.append)
    fresh = make_variables(weights=(-1.0, -1.0, -1.0))
    second.start(fresh, step=0)
    assert second.restore().step == 7
    assert int(fresh["global_step"].numpy()) == 7
    np.testing.assert_array_equal(fresh["w"].numpy(), [7.0, 7.0, 7.0])
    assert second.last_checkpoint == f"{tmp_path}/model.ckpt-7"
    assert announced == [f"Restored {tmp_path}/model.ckpt-7 (step 7)."]
    # The cadence goes on from the restored step: 10 is due, 8 and 9 are not.
    assert [s for s in (8, 9, 10) if second.may_save(s)] == [10]


def test_restore_with_no_checkpoint_returns_none_and_changes_nothing(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=5)
    variables = make_variables(weights=(1.0, 2.0, 3.0))
    manager.start(variables, step=0)
    assert manager.restore() is None
    np.testing.assert_array_equal(variables["w"].numpy(), [1.0, 2.0, 3.0])


def test_restore_none_ignores_the_checkpoints_on_disk(tmp_path, managers):
    first = managers(tmp_path, every_n_steps=2)
    variables = make_variables()
    first.start(variables, step=0)
    train_to(variables, 2)
    first.on_step(2)
    first.close()
    second = managers(tmp_path, every_n_steps=2, restore="none", on_existing="keep")
    fresh = make_variables()
    second.start(fresh, step=0)
    assert second.restore() is None
    assert int(fresh["global_step"].numpy()) == 0


def save_steps(directory, managers, *steps: int) -> None:
    """A finished earlier run that saved `steps` (and kept them all)."""
    manager = managers(directory, every_n_steps=1, max_to_keep=None)
    variables = make_variables()
    manager.start(variables, step=0)
    for step in steps:
        train_to(variables, step)
        manager.save(step)
    manager.close()


def test_restore_does_not_go_back_when_the_model_is_already_at_the_newest_step(tmp_path, managers):
    save_steps(tmp_path, managers, 4)
    manager = managers(tmp_path, every_n_steps=4)
    variables = make_variables(weights=(9.0, 9.0, 9.0))
    variables["global_step"].assign(4)
    manager.start(variables, step=4)
    assert manager.restore(current_step=4) is None
    np.testing.assert_array_equal(variables["w"].numpy(), [9.0, 9.0, 9.0])


def test_restore_skips_an_unreadable_newest_checkpoint_and_sets_it_aside(tmp_path, managers, caplog):
    save_steps(tmp_path, managers, 4, 8)
    data = tmp_path / "model.ckpt-8.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:10])
    manager = managers(tmp_path, every_n_steps=4)
    fresh = make_variables()
    manager.start(fresh, step=0)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        assert manager.restore().step == 4
    np.testing.assert_array_equal(fresh["w"].numpy(), [4.0, 4.0, 4.0])
    assert steps_on_disk(tmp_path) == [4]
    assert (tmp_path / "model.ckpt-8.corrupt.index").exists()
    assert any(
        r.getMessage() == f"Set unreadable checkpoint {tmp_path}/model.ckpt-8 aside as {tmp_path}/model.ckpt-8.corrupt."
        for r in caplog.records
    )



def test_a_checkpoint_set_aside_is_no_longer_named_by_the_state_file(tmp_path, managers):
    save_steps(tmp_path, managers, 4, 8)
    data = tmp_path / "model.ckpt-8.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:10])
    manager = managers(tmp_path, every_n_steps=4)
    manager.start(make_variables(), step=0)
    assert manager.restore().step == 4
    # TensorFlow's own reader finds the checkpoint that is left, not the one set aside.
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-4")

def test_restore_from_a_prefix_elsewhere_starts_from_it_until_the_run_has_its_own(tmp_path, managers):
    save_steps(tmp_path / "pretrained", managers, 5)
    options = dict(
        every_n_steps=10, restore=str(tmp_path / "pretrained" / "model.ckpt-5"), restore_optimizer=True
    )
    first = managers(tmp_path / "run", **options)
    variables = make_variables()
    first.start(variables, step=0)
    assert first.restore().step == 5
    train_to(variables, 10)
    first.on_step(10)
    first.close()
    second = managers(tmp_path / "run", **options)  # a restart of the same job
    second.start(make_variables(), step=0)
    assert second.restore().step == 10


def test_restore_from_a_missing_prefix_raises_naming_it(tmp_path, managers):
    missing = str(tmp_path / "nowhere" / "model.ckpt-3")
    manager = managers(tmp_path / "run", every_n_steps=10, restore=missing)
    manager.start(make_variables(), step=0)
    with pytest.raises(
        CheckpointError,
        match=re.escape(
            f"checkpoint.restore: no checkpoint at {missing} ({missing}.index does not exist). "
            f"HINT: give a prefix such as {tmp_path}/run/model.ckpt-100, a directory, `latest` or `none`."
        ),
    ):
        manager.restore()


@pytest.mark.parametrize(
    "leftover",
    ["model.ckpt-8.tfcheckpointer-tmp.index", SPARE],
    ids=["temporary file", "spare data file"],
)
def test_restore_removes_a_crashed_runs_leftovers_with_a_warning(tmp_path, managers, caplog, leftover):
    save_steps(tmp_path, managers, 4)
    (tmp_path / leftover).write_bytes(b"half written")
    manager = managers(tmp_path, every_n_steps=4)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        manager.start(make_variables(), step=0)
        assert (tmp_path / leftover).exists()
        manager.restore()
    assert not (tmp_path / leftover).exists()
    assert steps_on_disk(tmp_path) == [4]
    assert [r.getMessage() for r in caplog.records if r.name == "tfcheckpointer"] == [
        f"Removed {tmp_path}/{leftover}, left by an interrupted save."
    ]


def test_a_refused_restore_changes_nothing_on_disk_and_lets_the_directory_go(tmp_path, managers):
    save_steps(tmp_path, managers, 4, 8)
    (tmp_path / ".tfcheckpointer.lock").unlink()
    (tmp_path / "model.ckpt-9.tfcheckpointer-tmp.index").write_bytes(b"half written")
    (tmp_path / "model.ckpt-8.index").write_bytes(b"\0" * 10)  # unreadable: set aside, were it resumed
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    manager = managers(tmp_path, every_n_steps=4)
    manager.start({"w": tf.Variable(np.zeros(4, "float32"))}, step=0)
    with pytest.raises(RestoreMismatchError, match="model.ckpt-4 does not match the model"):
        manager.restore()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    other = managers(tmp_path, every_n_steps=4)
    other.start(make_variables(), step=0)  # not locked out
    assert other.restore().step == 4


# --- on_error ------------------------------------------------------------------------------------


def directory_that_is_a_file(tmp_path):
    path = tmp_path / "ckpt"
    path.write_text("a file where the directory should be")
    return path


def test_on_error_warn_keeps_going_when_a_save_fails(tmp_path, managers, caplog):
    directory = directory_that_is_a_file(tmp_path)
    manager = managers(directory, every_n_steps=2, on_error="warn", lock=False)
    variables = make_variables()
    manager.start(variables, step=0)
    with caplog.at_level(logging.WARNING, logger="tfcheckpointer"):
        for step in range(1, 5):
            train_to(variables, step)
            assert manager.on_step(step) is None
        assert manager.on_end(4) is None  # a failed save is not a saved step: tried again
    warnings = [r.getMessage() for r in caplog.records if "training goes on" in r.getMessage()]
    assert [w.split(": ")[0] for w in warnings] == [
        f"Cannot write checkpoint {directory}/model.ckpt-{step}" for step in (2, 4, 4)
    ]
    assert all(w.endswith(" -- training goes on (checkpoint.on_error: warn).") for w in warnings)


def test_on_error_raise_raises_a_checkpoint_error_when_a_save_fails(tmp_path, managers):
    directory = directory_that_is_a_file(tmp_path)
    manager = managers(directory, every_n_steps=2, lock=False)
    variables = make_variables()
    manager.start(variables, step=0)
    train_to(variables, 2)
    with pytest.raises(CheckpointError, match=rf"^Cannot write checkpoint {re.escape(str(directory))}/model\.ckpt-2: "):
        manager.on_step(2)


def test_a_directory_removed_after_start_fails_the_save_under_raise(tmp_path, managers):
    manager = managers(tmp_path / "ckpt", every_n_steps=1, lock=False)
    variables = make_variables()
    manager.start(variables, step=0)
    train_to(variables, 1)
    manager.on_step(1)
    shutil.rmtree(tmp_path / "ckpt")
    (tmp_path / "ckpt").write_text("replaced by a file")
    train_to(variables, 2)
    with pytest.raises(CheckpointError, match=r"^Cannot write checkpoint .*/ckpt/model\.ckpt-2: "):
        manager.on_step(2)


# --- Async --------------------------------------------------------------------------------------


def test_async_writes_in_the_background_and_on_end_waits_for_it(tmp_path, managers):
    writers: list[str] = []
    manager = managers(
        tmp_path, every_n_steps=2, async_save=True, max_to_keep=None,
        announce=lambda message: writers.append(threading.current_thread().name),
    )
    variables = make_variables()
    manager.start(variables, step=0)
    for step in range(1, 6):
        train_to(variables, step)
        assert manager.on_step(step) is None  # submitted, not waited for
    assert manager.on_end(5) is None
    assert steps_on_disk(tmp_path) == [2, 4, 5]
    assert writers == ["tfcheckpointer-writer"] * 3
    assert threading.current_thread().name not in writers
    assert manager.last_checkpoint == f"{tmp_path}/model.ckpt-5"
    for step in (2, 4, 5):
        reader = tf.train.load_checkpoint(str(tmp_path / f"model.ckpt-{step}"))
        np.testing.assert_array_equal(reader.get_tensor("w"), [step] * 3)


def test_async_snapshot_holds_the_values_of_its_step(tmp_path, managers):
    manager = managers(tmp_path, every_n_steps=1, async_save=True)
    variables = make_variables()
    manager.start(variables, step=0)
    train_to(variables, 1)
    manager.on_step(1)
    train_to(variables, 99)  # training moves on while the write may still run
    manager.wait()
    reader = tf.train.load_checkpoint(str(tmp_path / "model.ckpt-1"))
    np.testing.assert_array_equal(reader.get_tensor("w"), [1.0, 1.0, 1.0])
    assert reader.get_tensor("global_step") == 1


def test_async_failure_surfaces_at_on_end_under_raise(tmp_path, managers, caplog):
    directory = directory_that_is_a_file(tmp_path)
    manager = managers(directory, every_n_steps=2, async_save=True, lock=False)
    variables = make_variables()
    manager.start(variables, step=0)
    train_to(variables, 2)
    manager.on_step(2)
    with pytest.raises(CheckpointError, match=rf"^Cannot write checkpoint {re.escape(str(directory))}/model\.ckpt-2: "):
        manager.on_end(2)


# --- Signals -------------------------------------------------------------------------------------


def test_a_signal_saves_the_step_then_goes_to_the_previous_handler(tmp_path, managers, restore_signal_handlers):
    received: list[int] = []

    def recorder(signum, frame):
        received.append(signum)

    signal.signal(signal.SIGTERM, recorder)
    manager = managers(tmp_path, every_n_steps=100, save_on_signals=("SIGTERM",))
    variables = make_variables()
    manager.start(variables, step=0)
    assert signal.getsignal(signal.SIGTERM) is not recorder
    train_to(variables, 3)
    assert not manager.may_save(3)
    os.kill(os.getpid(), signal.SIGTERM)
    assert received == []  # caught and recorded, not yet handed on
    assert manager.may_save(3)
    manager.on_step(3)
    assert steps_on_disk(tmp_path) == [3]
    assert tf.train.load_checkpoint(str(tmp_path / "model.ckpt-3")).get_tensor("global_step") == 3
    assert received == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is recorder
    assert (tmp_path / ".tfcheckpointer.lock").read_text() == ""  # stopped: the lock is let go


def test_close_puts_the_previous_signal_handler_back(tmp_path, managers, restore_signal_handlers):
    def recorder(signum, frame):
        pass

    signal.signal(signal.SIGINT, recorder)
    manager = managers(tmp_path, every_n_steps=100, save_on_signals=("SIGINT",))
    manager.start(make_variables(), step=0)
    assert signal.getsignal(signal.SIGINT) is not recorder
    manager.close()
    assert signal.getsignal(signal.SIGINT) is recorder


class _SignalDuringAgreement:
    """A one-worker stand-in for `cluster.Cluster` whose first all-reduce a SIGTERM interrupts:
    it arrives after this worker's part was sent, so the other workers have not heard of it."""

    is_chief = True
    task = "worker:0"

    def __init__(self):
        self.interrupted = False

    def agree(self, values):
        if not self.interrupted:
            self.interrupted = True
            os.kill(os.getpid(), signal.SIGTERM)
        return list(values)

    def chief_decides(self, decision):
        return decision


def test_in_a_cluster_a_signal_during_the_agreement_is_acted_on_at_the_next_step(
    tmp_path, managers, restore_signal_handlers
):
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    manager = managers(tmp_path, every_n_steps=100, save_on_signals=("SIGTERM",))
    variables = make_variables()
    manager.start(variables, step=0, cluster=_SignalDuringAgreement())
    train_to(variables, 1)
    # The workers agreed that none had a signal: saving (a collective) here would be this
    # worker's alone, and it would wait forever for the others.
    assert manager.on_step(1) is None
    assert (steps_on_disk(tmp_path), received) == ([], [])
    train_to(variables, 2)
    manager.on_step(2)  # told to every worker now: all save step 2 and stop
    assert (steps_on_disk(tmp_path), received) == ([2], [signal.SIGTERM])
