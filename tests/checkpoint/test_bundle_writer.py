"""Our bundle writer: the same bytes as TensorFlow's SaveV2, read by every TF reader."""

from __future__ import annotations

import logging

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from tfcheckpointer.checkpoint.bundle import Snapshot, save_bundle

SUFFIXES = (".index", ".data-00000-of-00001")


def _save_both(tmp_path, keys, arrays, slices=None):
    """Write the tensors with SaveV2 and with `save_bundle`; return both prefixes."""
    theirs, ours = str(tmp_path / "savev2"), str(tmp_path / "ours")
    tf.raw_ops.SaveV2(
        prefix=theirs, tensor_names=keys, shape_and_slices=slices or [""] * len(keys),
        tensors=[tf.constant(a) for a in arrays],
    )
    save_bundle(ours, Snapshot(keys, [tf.constant(a) for a in arrays], slices))
    return theirs, ours


def _assert_identical(theirs: str, ours: str) -> None:
    for suffix in SUFFIXES:
        with open(theirs + suffix, "rb") as a, open(ours + suffix, "rb") as b:
            assert a.read() == b.read(), suffix


@pytest.mark.parametrize(
    "dtype", ["float32", "float16", ml_dtypes.bfloat16, "float64", "int32", "int64", "bool", "uint8"]
)
def test_files_are_byte_identical_to_savev2_for_each_dtype(tmp_path, dtype):
    values = (np.random.default_rng(0).random((3, 5)) * 100).astype(dtype)
    _assert_identical(*_save_both(tmp_path, ["dense/kernel", "dense/bias"], [values, values[0]]))


def test_scalars_and_zero_size_tensors_are_byte_identical(tmp_path):
    arrays = [np.array(7, np.int64), np.zeros((0, 3), np.float32), np.array(1.5, np.float32)]
    _assert_identical(*_save_both(tmp_path, ["global_step", "empty", "lr"], arrays))


def test_a_tensor_larger_than_savev2s_8mb_buffer_is_byte_identical(tmp_path):
    big = np.random.default_rng(0).random(3_000_000).astype(np.float32)  # 12 MB
    _assert_identical(*_save_both(tmp_path, ["small", "big"], [np.ones(3, np.float32), big]))


def test_tensors_shared_between_the_two_writer_threads_are_byte_identical(tmp_path):
    """Uneven sizes, several 4 MB chunks each: every byte lands at its own offset."""
    rng = np.random.default_rng(1)
    arrays = [rng.random(n).astype(np.float32) for n in (2_500_000, 7, 1_300_001, 3_100_000, 0, 900_000)]
    keys = [f"layer{i}/kernel" for i in range(len(arrays))]
    _assert_identical(*_save_both(tmp_path, keys, arrays))


def test_an_index_of_several_blocks_is_byte_identical(tmp_path):
    # 3000 100-byte keys sharing little overflow one 256 KiB index data block.
    keys = [f"{i:05d}" + "x" * 95 for i in range(3000)][::-1]
    arrays = [np.full(1, i, np.float32) for i in range(3000)]
    theirs, ours = _save_both(tmp_path, keys, arrays)
    assert (tmp_path / "ours.index").stat().st_size > 262144
    _assert_identical(theirs, ours)


def test_tensorflow_readers_read_our_bundle(tmp_path):
    kernel = np.arange(6, dtype=np.float32).reshape(2, 3)
    prefix = str(tmp_path / "ckpt")
    save_bundle(prefix, Snapshot(["w", "step"], [tf.constant(kernel), tf.constant(np.int64(4))]))

    assert sorted(tf.train.list_variables(prefix)) == [("step", []), ("w", [2, 3])]
    np.testing.assert_array_equal(tf.train.load_checkpoint(prefix).get_tensor("w"), kernel)
    with tf.Graph().as_default():
        w = tf.compat.v1.get_variable("w", [2, 3], tf.float32)
        with tf.compat.v1.Session() as session:
            tf.compat.v1.train.Saver([w]).restore(session, prefix)
            np.testing.assert_array_equal(session.run(w), kernel)


def test_numeric_tensors_do_not_go_through_savev2(tmp_path, monkeypatch):
    def savev2(**_):
        raise AssertionError("SaveV2 ran")

    monkeypatch.setattr(tf.raw_ops, "SaveV2", savev2)
    save_bundle(str(tmp_path / "ckpt"), Snapshot(["w"], [tf.constant([1.0])]))
    assert tf.train.load_checkpoint(str(tmp_path / "ckpt")).get_tensor("w") == [1.0]


def test_strings_fall_back_to_savev2_and_say_so(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="tfcheckpointer")
    theirs, ours = _save_both(tmp_path, ["name", "w"], [np.array([b"a", b"bc"]), np.ones(2, np.float32)])
    assert "with SaveV2: name has dtype object" in caplog.text
    _assert_identical(theirs, ours)


def test_sliced_variables_fall_back_to_savev2_and_say_so(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="tfcheckpointer")
    halves = [np.zeros((2, 4), np.float32), np.ones((2, 4), np.float32)]
    theirs, ours = _save_both(tmp_path, ["w", "w"], halves, slices=["4 4 0,2:0,4", "4 4 2,2:0,4"])
    assert "with SaveV2: a key repeats" in caplog.text
    _assert_identical(theirs, ours)


def test_a_url_goes_to_savev2_and_says_so(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="tfcheckpointer")
    save_bundle(f"file://{tmp_path}/ckpt", Snapshot(["w"], [tf.constant([1.0])]))
    assert "with SaveV2: TensorFlow's file system writes URLs" in caplog.text
    assert tf.train.load_checkpoint(str(tmp_path / "ckpt")).get_tensor("w") == [1.0]
