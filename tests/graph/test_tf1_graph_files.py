"""`graph.pbtxt` in the form TF1 tools expect, checked by TensorFlow's own `freeze_graph` tool.

Each model trains with the callback (which writes `graph.pbtxt` and the
checkpoints); then ONE fresh interpreter, without Keras, runs the classic call
(`python -m tensorflow.python.tools.freeze_graph --input_graph=graph.pbtxt
--input_checkpoint=PREFIX ...`) and restore-by-name (`Saver(var_list={key:
graph.get_tensor_by_name(key + ":0")})`) on every model, since importing
TensorFlow takes seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import convnet, mlp, recurrent, run_in_tf1_session, two_in_two_out
from tfcheckpointer.cli import main
from tfcheckpointer.errors import RestoreMismatchError
from tfcheckpointer.graph.files import read_graph_def
from tfcheckpointer.graph.keras_freeze import model_signature
from tfcheckpointer.graph.session_freeze import freeze_graph_file
from tfcheckpointer.integrations.keras_callback import CheckpointCallback
from tfcheckpointer.config import FreezeConfig

# Run by a fresh interpreter: the classic TF1 calls on graph.pbtxt, for every model.
TF1_TOOLS = r'''
import json, runpy, sys, traceback
import numpy as np
import tensorflow as tf

manifest, out = sys.argv[1:]
report = {}
for case in json.load(open(manifest)):
    result = report[case["name"]] = {}
    sys.argv = ["freeze_graph", "--input_graph=" + case["graph"],
                "--input_checkpoint=" + case["prefix"],
                "--output_node_names=" + ",".join(case["outputs"]),
                "--output_graph=" + case["frozen"]]
    try:
        # A graph of its own: the tool imports into the default graph, as it would in its own process.
        with tf.Graph().as_default():
            runpy.run_module("tensorflow.python.tools.freeze_graph", run_name="__main__")
    except SystemExit as done:
        result["exit"] = done.code
    except Exception:
        result["exit"] = traceback.format_exc()
    try:
        with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
            graph_def = tf.compat.v1.GraphDef()
            from google.protobuf import text_format
            text_format.Parse(open(case["graph"]).read(), graph_def)
            tf.compat.v1.import_graph_def(graph_def, name="")
            keys = [k for k, _ in tf.train.list_variables(case["prefix"])]
            saver = tf.compat.v1.train.Saver(
                var_list={k: graph.get_tensor_by_name(k + ":0") for k in keys})
            saver.restore(session, case["prefix"])
            feeds = {name + ":0": np.load(path) for name, path in case["feeds"].items()}
            got = session.run([o + ":0" for o in case["outputs"]], feeds)
            result["restored"] = [case["prefix"] + f".{i}.byname.npy" for i in range(len(got))]
            for path, value in zip(result["restored"], got):
                np.save(path, value)
    except Exception:
        result["restored"] = traceback.format_exc()
json.dump(report, open(out, "w"))
'''


def embedding():
    keras.utils.set_random_seed(6)
    model = keras.Sequential(
        [keras.Input((3,), dtype="int32"), keras.layers.Embedding(10, 4), keras.layers.Flatten(),
         keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    return model


class TableLookup(keras.layers.Layer):
    """Rows of a table by id through `tf.gather` on the variable itself: a `ResourceGather`."""

    def build(self, shape):
        self.table = self.add_weight(shape=(10, 4), initializer="random_normal")

    def call(self, ids):
        return tf.gather(self.table.value, ids)


def gather():
    keras.utils.set_random_seed(8)
    model = keras.Sequential(
        [keras.Input((3,), dtype="int32"), TableLookup(), keras.layers.Flatten(),
         keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    return model


class NestedProduct(keras.layers.Layer):
    """`x @ w` in a nested `tf.function`, which takes the variable's handle as an argument."""

    def build(self, shape):
        self.w = self.add_weight(shape=(3, 1), initializer="ones")

    def call(self, x):
        return tf.function(lambda x: tf.matmul(x, self.w.value))(x)


def data(name):
    rng = np.random.default_rng(7)
    if name == "mlp":
        x = rng.standard_normal((16, 4)).astype("float32")
        return x, (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    if name == "convnet":
        return rng.standard_normal((16, 6, 6, 2)).astype("float32"), rng.integers(0, 3, 16)
    if name == "two-in-two-out":
        x = {"image": rng.standard_normal((16, 5)).astype("float32"),
             "meta": rng.standard_normal((16, 2)).astype("float32")}
        return x, {"score": rng.standard_normal((16, 1)), "label": rng.integers(0, 3, 16)}
    if name in ("embedding", "gather"):
        return rng.integers(0, 10, (16, 3)).astype("int32"), rng.standard_normal((16, 1))
    return rng.standard_normal((16, 5, 3)).astype("float32"), rng.standard_normal((16, 2))


MODELS = {"mlp": mlp, "convnet": convnet, "two-in-two-out": two_in_two_out,
          "embedding": embedding, "gather": gather, "lstm": recurrent}


class Trained(NamedTuple):
    graph: str
    prefix: str
    feeds: dict[str, np.ndarray]  # by input node name
    expected: dict[str, np.ndarray]  # by output node name


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Trained]:
    """Each model trained two steps with the callback; its graph.pbtxt, checkpoint and outputs."""
    result = {}
    for name, build in MODELS.items():
        directory = tmp_path_factory.mktemp(name)
        model = build()
        x, y = data(name)
        callback = CheckpointCallback(directory=str(directory), every_n_steps=2, freeze=None)
        model.fit(x, y, batch_size=8, epochs=1, callbacks=[callback], verbose=0)
        signature = model_signature(model)
        flat_x = [x[k] for k in ("image", "meta")] if isinstance(x, dict) else [x]
        got = model(x, training=False)
        flat_y = [got[k] for k in ("label", "score")] if isinstance(got, dict) else [got]
        result[name] = Trained(
            str(directory / "graph.pbtxt"),
            tf.train.latest_checkpoint(str(directory)),
            {i.name: v for i, v in zip(signature.inputs, flat_x)},
            {o.name: np.asarray(v) for o, v in zip(signature.outputs, flat_y)},
        )
    return result


@pytest.fixture(scope="module")
def tf1_tools(trained, tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("tools")
    manifest = []
    for name, case in trained.items():
        feeds = {}
        for i, (node, value) in enumerate(case.feeds.items()):
            feeds[node] = str(tmp / f"{name}.input{i}.npy")
            np.save(feeds[node], value)
        manifest.append({"name": name, "graph": case.graph, "prefix": case.prefix,
                         "feeds": feeds, "outputs": list(case.expected),
                         "frozen": str(tmp / f"{name}.pb")})
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    (tmp / "tools.py").write_text(TF1_TOOLS)
    done = subprocess.run(
        [sys.executable, str(tmp / "tools.py"), str(tmp / "manifest.json"), str(tmp / "report.json")],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp / "report.json").read_text())
    for item in manifest:
        report[item["name"]]["frozen"] = item["frozen"]
    return report


@pytest.mark.parametrize("name", list(MODELS))
def test_tensorflow_freeze_graph_tool_freezes_graph_pbtxt_equal_to_keras(trained, tf1_tools, name):
    result, case = tf1_tools[name], trained[name]
    assert result["exit"] in (0, None), result["exit"]
    got = run_in_tf1_session(result["frozen"], case.feeds, list(case.expected))
    for value, expected in zip(got, case.expected.values()):
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
def test_tf1_restore_by_name_into_graph_pbtxt_equals_keras(trained, tf1_tools, name):
    restored = tf1_tools[name]["restored"]
    assert isinstance(restored, list), restored
    for path, expected in zip(restored, trained[name].expected.values()):
        np.testing.assert_allclose(np.load(path), expected, rtol=0, atol=1e-6)


def test_graph_pbtxt_holds_reference_variables_named_by_key(trained):
    graph_def = read_graph_def(trained["lstm"].graph)
    ops = {node.op for node in graph_def.node}
    assert "VariableV2" in ops
    assert not ops & {"VarHandleOp", "ReadVariableOp", "AssignVariableOp", "SaveV2", "RestoreV2"}
    keys = {k for k, _ in tf.train.list_variables(trained["lstm"].prefix)}
    assert {n.name for n in graph_def.node if n.op == "VariableV2"} == keys


@pytest.mark.parametrize("name", ["convnet", "lstm"])
def test_freeze_graph_command_equals_keras_and_writes_the_sidecar(trained, tmp_path, name, capsys):
    case = trained[name]
    output = tmp_path / "f.pb"
    assert main(["freeze", "--graph", case.graph, "--checkpoint", case.prefix,
                 "--output-names", ",".join(case.expected), "--output", str(output)]) == 0
    assert f"Froze {case.prefix}" in capsys.readouterr().out
    got = run_in_tf1_session(output, case.feeds, list(case.expected))
    np.testing.assert_allclose(got[0], next(iter(case.expected.values())), rtol=0, atol=1e-6)
    sidecar = json.loads((tmp_path / "f.pb.json").read_text())
    assert (sidecar["graph_def"], sidecar["checkpoint"], sidecar["max_abs_diff"]) == (
        case.graph, case.prefix, 0.0)


def test_a_handle_op_without_reference_form_keeps_resource_variables_and_warns(
    tmp_path, caplog
):
    keras.utils.set_random_seed(9)
    model = keras.Sequential([keras.Input((3,)), NestedProduct()])
    model.compile("adam", "mse")
    x = np.random.default_rng(9).standard_normal((16, 3)).astype("float32")
    callback = CheckpointCallback(directory=str(tmp_path), every_n_steps=2, freeze=None)
    with caplog.at_level("WARNING", logger="tfcheckpointer"):
        model.fit(x, x[:, :1], batch_size=8, epochs=1, callbacks=[callback], verbose=0)
    (warning,) = [r.getMessage() for r in caplog.records if "resource variables" in r.getMessage()]
    assert warning.startswith("graph file keeps resource variables (StatefulPartitionedCall ")
    assert "use the .meta (import_meta_graph, freeze_graph --input_meta_graph)" in warning
    graph = str(tmp_path / "graph.pbtxt")
    assert "VarHandleOp" in {n.op for n in read_graph_def(graph).node}
    signature = model_signature(model)
    output = signature.outputs[0].name
    config = FreezeConfig(output=str(tmp_path / "f.pb"), output_names=(output,))
    frozen = freeze_graph_file(graph, config).frozen
    assert frozen.max_abs_diff == 0.0
    (got,) = run_in_tf1_session(frozen.path, {signature.inputs[0].name: x}, [output])
    np.testing.assert_allclose(got, model(x, training=False), rtol=0, atol=1e-6)


def test_freeze_graph_without_output_names_is_one_line_exit_2(trained, tmp_path, capsys):
    code = main(["freeze", "--graph", trained["mlp"].graph, "--output", str(tmp_path / "f.pb")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert "a GraphDef declares no outputs HINT: pass --output-names" in err
    assert not (tmp_path / "f.pb").exists()


def test_freeze_graph_given_a_meta_graph_points_to_meta_in_one_line(trained, tmp_path, capsys):
    meta = trained["mlp"].prefix + ".meta"
    code = main(["freeze", "--graph", meta, "--output-names", "x", "-o", str(tmp_path / "f.pb")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert f"{meta} is a MetaGraphDef; --graph takes a GraphDef (graph.pbtxt). HINT: freeze it " \
        f"with --meta {meta}." in err


def test_freeze_graph_with_another_models_checkpoint_is_refused(trained, tmp_path):
    config = FreezeConfig(output=str(tmp_path / "f.pb"),
                          output_names=tuple(trained["mlp"].expected))
    with pytest.raises(RestoreMismatchError, match=r"(?s)does not match the model\.\nMissing from the "
                       r"checkpoint: .*dense_1/kernel.*HINT: give a checkpoint of the run that wrote"):
        freeze_graph_file(trained["mlp"].graph, config, checkpoint=trained["convnet"].prefix)
    assert not (tmp_path / "f.pb").exists()
