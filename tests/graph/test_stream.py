"""Streaming freeze: the file written node by node is the GraphDef TensorFlow's converters give."""

from __future__ import annotations

import logging
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.framework import convert_to_constants

import keras

from tests.helpers import convnet, mlp, recurrent
from tfcheckpointer.config import FreezeConfig
from tfcheckpointer.errors import FreezeError
from tfcheckpointer.graph import progress, verify
from tfcheckpointer.graph.constants import function_skeleton, session_skeleton
from tfcheckpointer.graph.files import read_graph_def, write_streamed_graph
from tfcheckpointer.graph.keras_freeze import (
    freeze_model,
    live_outputs,
    model_signature,
    streamed_graph_def,
    trace,
)
from tfcheckpointer.graph.nodes import clear_devices
from tfcheckpointer.graph.publish import publish_frozen_graph
from tfcheckpointer.graph.signature import ModelSignature, TensorInfo


def _stock_keras(concrete):
    """Today's converter: `convert_variables_to_constants_v2`, devices cleared."""
    frozen = convert_to_constants.convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    graph_def = frozen.graph.as_graph_def()
    clear_devices(graph_def)
    return graph_def


def _text(message):
    # Each conversion names its converted functions with a fresh number (`..._frozen_601`).
    return re.sub(r"_frozen_\d+", "_frozen_N", text_format.MessageToString(message))


def _assert_same_graph(got, want):
    """Same nodes (by name, every field: op, inputs, attrs, constant values), library, versions."""
    assert {n.name: _text(n) for n in got.node} == {n.name: _text(n) for n in want.node}
    # The library in any order (its functions are registered in an order of their own).
    assert sorted(map(_text, got.library.function)) == sorted(map(_text, want.library.function))
    assert sorted(map(_text, got.library.gradient)) == sorted(map(_text, want.library.gradient))
    assert got.versions == want.versions


def _gru():
    keras.utils.set_random_seed(6)
    return keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4), keras.layers.Dense(2)])


@pytest.mark.parametrize(
    "build", [mlp, convnet, recurrent, _gru], ids=["mlp", "convnet-batchnorm", "lstm-while", "gru-while"]
)
def test_streamed_keras_file_parses_to_the_stock_converters_graph(tmp_path, build):
    model = build()  # kept alive: the traced function reads its variables
    concrete = trace(model, model_signature(model))
    streamed = function_skeleton(concrete)
    clear_devices(streamed.skeleton)
    assert streamed.sources  # the kernels at least are streamed, not built in memory
    sha256, size = write_streamed_graph(streamed, str(tmp_path / "frozen.pb"))

    want = _stock_keras(concrete)
    _assert_same_graph(read_graph_def(str(tmp_path / "frozen.pb")), want)
    if not want.library.function:  # (function names differ, see `_text`)
        # Byte for byte what a deterministic serialization of the whole gives.
        assert (tmp_path / "frozen.pb").read_bytes() == want.SerializeToString(deterministic=True)
    assert size == streamed.byte_size() == os.path.getsize(tmp_path / "frozen.pb")


def test_streamed_text_file_is_text_format_of_the_whole(tmp_path):
    model = convnet()
    concrete = trace(model, model_signature(model))
    streamed = function_skeleton(concrete)
    clear_devices(streamed.skeleton)
    write_streamed_graph(streamed, str(tmp_path / "frozen.pbtxt"))
    want = text_format.MessageToString(_stock_keras(concrete))
    assert (tmp_path / "frozen.pbtxt").read_text() == want


def _tf1_session():
    """A TF1 graph with a reference variable, a resource variable and a scalar, initialized."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.compat.v1.get_variable("w", [3, 4], use_resource=False)
        v = tf.compat.v1.get_variable("v", [4, 2], use_resource=True)
        scale = tf.compat.v1.get_variable("scale", [], use_resource=True)
        tf.identity(tf.matmul(tf.matmul(x, w), v) * scale, name="y")
        init = tf.compat.v1.global_variables_initializer()
    session = tf.compat.v1.Session(graph=graph)
    session.run(init)
    return session


def test_streamed_session_file_parses_to_the_tf1_converters_graph(tmp_path):
    session = _tf1_session()
    graph_def = session.graph.as_graph_def()
    streamed = session_skeleton(session, graph_def, ["y"])
    assert sorted(streamed.sources) == ["v", "w"]  # the scalar is built in, as the converter does
    write_streamed_graph(streamed, str(tmp_path / "frozen.pb"))

    want = tf.compat.v1.graph_util.convert_variables_to_constants(session, graph_def, ["y"])
    _assert_same_graph(read_graph_def(str(tmp_path / "frozen.pb")), want)


def _config(tmp_path, **options):
    return FreezeConfig(output=str(tmp_path / "frozen.pb"), **options)


def test_a_graph_over_the_size_limit_is_refused_before_anything_is_written(tmp_path):
    model = mlp()
    signature = model_signature(model)
    streamed = streamed_graph_def(model, signature)
    with pytest.raises(FreezeError, match=r"would be [\d,]+ bytes; it must stay under 1,000 bytes .*nothing was written"):
        publish_frozen_graph(
            streamed, _config(tmp_path), signature,
            reference=lambda inputs: live_outputs(model, inputs), size_limit=1000,
        )
    assert os.listdir(tmp_path) == []


def test_verification_runs_the_bytes_of_the_file(tmp_path, monkeypatch):
    # Every constant with content is fed from the file; a flipped byte in one shows in the outputs.
    monkeypatch.setattr(verify, "FED_CONSTANT_BYTES", 1)
    model = mlp()
    signature = model_signature(model)
    path = tmp_path / "frozen.pb"
    write_streamed_graph(streamed_graph_def(model, signature), str(path))
    inputs = [np.ones((2, 4), np.float32)]
    np.testing.assert_array_equal(
        verify.run_graph_file(str(path), signature, inputs)[0], live_outputs(model, inputs)[0]
    )
    kernel = np.asarray(model.layers[0].kernel).tobytes()
    data = path.read_bytes()
    start = data.index(kernel)
    start += 3  # a float32's sign and exponent: a change the outputs cannot hide
    path.write_bytes(data[:start] + bytes([data[start] ^ 0x40]) + data[start + 1:])
    changed = verify.run_graph_file(str(path), signature, inputs)[0]
    assert not np.array_equal(changed, live_outputs(model, inputs)[0])


def test_verification_refuses_a_truncated_file(tmp_path):
    model = mlp()
    signature = model_signature(model)
    path = tmp_path / "frozen.pb"
    write_streamed_graph(streamed_graph_def(model, signature), str(path))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(FreezeError, match=r"ends inside a field \(is it truncated\?\)"):
        verify.run_graph_file(str(path), signature, [np.ones((1, 4), np.float32)])


def test_verification_refuses_a_constant_whose_bytes_do_not_fill_its_shape(tmp_path):
    node = tf.compat.v1.NodeDef(name="c", op="Const")
    node.attr["dtype"].type = tf.float32.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.zeros((2, 3), np.float32)))
    node.attr["value"].tensor.tensor_content = bytes(20)
    graph_def = tf.compat.v1.GraphDef(node=[node])
    (tmp_path / "bad.pb").write_bytes(graph_def.SerializeToString())
    signature = ModelSignature((), (TensorInfo("c", "float32", (2, 3)),))
    with pytest.raises(FreezeError, match=r"Constant 'c' holds 20 bytes of float32, which do not fill its shape \[2, 3\]"):
        verify.run_graph_file(str(tmp_path / "bad.pb"), signature, [])


def test_progress_bar_and_rate_log_line(tmp_path, capsys, caplog, monkeypatch):
    freeze_model(mlp(), _config(tmp_path), progress=True)
    assert capsys.readouterr().out == ""  # a small graph gets no bar
    monkeypatch.setattr(progress, "MIN_BYTES", 0)
    with caplog.at_level(logging.INFO, logger="tfcheckpointer"):
        freeze_model(mlp(), _config(tmp_path), progress=True)
    out = capsys.readouterr().out
    assert "Freezing: 0.0 MB" in out and "1/1" in out
    assert any(
        "Wrote frozen graph" in r.getMessage() and "MB/s" in r.getMessage() for r in caplog.records
    )


def test_piped_progress_is_a_few_lines_not_one_a_redraw(capsys, monkeypatch):
    import time

    monkeypatch.setattr(progress, "MIN_BYTES", 0)
    update = progress.progress_bar(5 << 20)  # capsys's stdout is no terminal
    for mb in range(1, 6):
        time.sleep(0.06)  # past a terminal's redraw interval (0.05 s) each time
        update(mb << 20)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[0] == "Freezing: 5.0 MB"
    assert len(lines) <= 3 and "5/5" in lines[-1]


def test_optimize_materializes_the_graph_and_still_publishes(tmp_path):
    frozen = freeze_model(convnet(), _config(tmp_path, optimize=True))
    assert frozen.optimized is not None
    assert frozen.optimized.nodes_after < frozen.optimized.nodes_before
    assert frozen.max_abs_diff is not None


def test_text_progress_counts_to_the_size_it_was_given(tmp_path):
    # The bar is made for `byte_size()` (binary) bytes; text is longer and must not overshoot it.
    model = mlp()
    streamed = streamed_graph_def(model, model_signature(model))
    shown = []
    write_streamed_graph(streamed, str(tmp_path / "frozen.pbtxt"), progress=shown.append)
    assert max(shown) == shown[-1] == streamed.byte_size()


def test_a_variable_of_unknown_shape_streams_as_its_value(tmp_path):
    # The stock converter reads such a variable's value; its shape is the value's.
    variable = tf.Variable(np.arange(6, dtype=np.float32).reshape(3, 2), shape=tf.TensorShape(None))
    concrete = tf.function(lambda x: tf.matmul(x, variable)).get_concrete_function(
        tf.TensorSpec([None, 3], tf.float32)
    )
    streamed = function_skeleton(concrete)
    clear_devices(streamed.skeleton)
    write_streamed_graph(streamed, str(tmp_path / "frozen.pb"))
    _assert_same_graph(read_graph_def(str(tmp_path / "frozen.pb")), _stock_keras(concrete))


def test_a_variable_that_cannot_be_read_is_named_not_blamed_on_the_write(tmp_path):
    # Variables are read while the file is written: a failed read is the variable's fault.
    from tfcheckpointer.graph.session_freeze import freeze_session

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.compat.v1.get_variable("w", [3, 4], use_resource=True)
        tf.identity(tf.matmul(x, w), name="y")
    with tf.compat.v1.Session(graph=graph) as session:  # w never initialized
        with pytest.raises(FreezeError, match=r"Cannot read variable 'w' to freeze it: .*'w/Read/ReadVariableOp'"):
            freeze_session(session, _config(tmp_path, input_names=("x",), output_names=("y",)))
    assert os.listdir(tmp_path) == []
