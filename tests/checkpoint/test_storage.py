"""Which file layer reaches which path."""

from __future__ import annotations

import tensorflow as tf

from tfcheckpointer.checkpoint.storage import FsspecFiles, TensorFlowFiles, files_for
from tfcheckpointer.config.urls import TENSORFLOW_SCHEMES


def test_the_schemes_left_to_tensorflow_are_those_its_file_layer_has():
    assert set(tf.io.gfile.get_registered_schemes()) == TENSORFLOW_SCHEMES


def test_tensorflow_reaches_local_paths_and_its_own_schemes_fsspec_the_rest():
    assert isinstance(files_for("runs/ckpt"), TensorFlowFiles)
    assert isinstance(files_for("gs://bucket/ckpt"), TensorFlowFiles)
    assert isinstance(files_for("s3://bucket/ckpt"), FsspecFiles)
    assert isinstance(files_for("memory://ckpt"), FsspecFiles)
