"""`.meta` files for eagerly trained Keras models, checked by TF1 consumers in fresh processes.

A TF1 consumer (no Keras) runs `import_meta_graph` + `Saver.restore` on each
case, and TensorFlow's own `freeze_graph` tool freezes two; they run once, side
by side, for the whole module, since importing TensorFlow takes seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys
from typing import NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import convnet, mlp, two_in_two_out
from tfcheckpointer.checkpoint import keys, naming
from tfcheckpointer.checkpoint.files import atomic_write
from tfcheckpointer.checkpoint.variables import make_saver
from tfcheckpointer.errors import FreezeError
from tfcheckpointer.graph.files import read_graph_def, write_graph_def
from tfcheckpointer.graph.keras_freeze import model_signature
from tfcheckpointer.graph.files import serialize_meta_graph_def
from tfcheckpointer.graph.metagraph import build_meta_graph, graph_def_of
from tfcheckpointer.graph.signature import (
    INPUTS_COLLECTION,
    OUTPUTS_COLLECTION,
    SERVING_SIGNATURE_KEY,
)

# Run by a fresh interpreter: what a TF1 user does with our files, without Keras.
TF1_CONSUMER = r'''
import json, sys, traceback
import numpy as np
import tensorflow as tf

report = {}
for case in json.load(open(sys.argv[1])):
    try:
        with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
            saver = tf.compat.v1.train.import_meta_graph(case["meta"])
            saver.restore(session, case["prefix"])
            feeds = {name: np.load(path) for name, path in case["feeds"].items()}
            outputs = session.run(case["fetches"], feeds)
            paths = {}
            for name, value in zip(case["fetches"], outputs):
                paths[name] = f"{case['prefix']}.{len(paths)}.tf1.npy"
                np.save(paths[name], value)
            report[case["name"]] = {
                "outputs": paths,
                "inputs": [t.name for t in tf.compat.v1.get_collection("inputs")],
                "outputs_collection": [t.name for t in tf.compat.v1.get_collection("outputs")],
                "global_step": int(session.run(tf.compat.v1.train.get_global_step())),
            }
    except Exception:
        report[case["name"]] = {"error": traceback.format_exc()}
json.dump(report, open(sys.argv[2], "w"))
'''


def convnet_case() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return convnet(), rng.standard_normal((16, 6, 6, 2)).astype("float32"), rng.integers(0, 3, 16)


def recurrent() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    rng = np.random.default_rng(5)
    return model, rng.standard_normal((16, 5, 3)).astype("float32"), rng.standard_normal((16, 2))


def two_in_two_out_case() -> tuple[keras.Model, dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(4)
    x = {"image": rng.standard_normal((16, 5)).astype("float32"),
         "meta": rng.standard_normal((16, 2)).astype("float32")}
    return two_in_two_out(), x, {"score": rng.standard_normal((16, 1)), "label": rng.integers(0, 3, 16)}


def small_mlp() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 4)).astype("float32")
    return mlp(), x, (x.sum(axis=1, keepdims=True) > 0).astype("float32")


@dataclasses.dataclass
class Case:
    name: str
    prefix: str
    meta: tf.compat.v1.MetaGraphDef
    feeds: dict[str, np.ndarray]  # by tensor name
    expected: dict[str, np.ndarray]  # by tensor name


# (name, builder, input names, output names, include_optimizer). The default names
# (`dense_1`, `label`, ...) are prefixes of variable keys (`dense_1/kernel`), which
# import_graph_def would rename were the variables created first.
CASES = [
    ("mlp", small_mlp, None, None, True),
    ("convnet", convnet_case, ["inputs/X"], ["output/predict"], True),
    ("two-in-two-out", two_in_two_out_case, None, None, True),
    ("lstm", recurrent, ["inputs/X"], ["output/predict"], True),
    ("mlp-without-optimizer", small_mlp, None, None, False),
]

FROZEN_BY_TF_TOOL = ["convnet", "lstm"]


def export(tmp, name, build, input_names, output_names, include_optimizer) -> Case:
    """Train two steps, save a checkpoint as the package does, write its `.meta`."""
    model, x, y = build()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    variables = keys.checkpoint_variables(model, include_optimizer=include_optimizer)
    prefix = str(tmp / f"{name}.ckpt-2")
    make_saver(variables).save(None, prefix, write_meta_graph=False, write_state=False)
    signature = model_signature(model, input_names, output_names)
    meta = build_meta_graph(model, signature, variables)
    atomic_write(prefix + naming.META_SUFFIX, serialize_meta_graph_def(meta))
    flat_x = [x[k] for k in ("image", "meta")] if isinstance(x, dict) else [x]
    got = model(x, training=False)
    flat_y = [got[k] for k in ("label", "score")] if isinstance(got, dict) else [got]
    return Case(
        name,
        prefix,
        meta,
        {i.tensor: v for i, v in zip(signature.inputs, flat_x)},
        {o.tensor: np.asarray(v) for o, v in zip(signature.outputs, flat_y)},
    )


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    tmp = tmp_path_factory.mktemp("metagraph")
    return {case[0]: export(tmp, *case) for case in CASES}


class Consumers(NamedTuple):
    report: dict[str, dict]  # the TF1 consumer's, by case name
    frozen: dict[str, tuple[int, str, pathlib.Path]]  # freeze_graph's exit code, log and output


@pytest.fixture(scope="module")
def consumers(cases, tmp_path_factory) -> Consumers:
    """Run the TF1 consumer on every case and `freeze_graph` on some, all in parallel."""
    tmp = tmp_path_factory.mktemp("consumers")
    manifest = []
    for case in cases.values():
        feeds = {}
        for i, (tensor, value) in enumerate(case.feeds.items()):
            feeds[tensor] = f"{case.prefix}.input{i}.npy"
            np.save(feeds[tensor], value)
        manifest.append({"name": case.name, "meta": case.prefix + ".meta", "prefix": case.prefix,
                         "feeds": feeds, "fetches": list(case.expected)})
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    (tmp / "consumer.py").write_text(TF1_CONSUMER)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    freezers = {
        name: subprocess.Popen(
            [sys.executable, "-m", "tensorflow.python.tools.freeze_graph",
             f"--input_meta_graph={cases[name].prefix}.meta",
             f"--input_checkpoint={cases[name].prefix}",
             "--output_node_names=output/predict", f"--output_graph={tmp / name}.pb",
             "--input_binary=true"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for name in FROZEN_BY_TF_TOOL
    }
    try:
        consumer = subprocess.run(
            [sys.executable, str(tmp / "consumer.py"), str(tmp / "manifest.json"),
             str(tmp / "report.json")],
            env=env, capture_output=True, text=True, timeout=300,
        )
        frozen = {}
        for name, process in freezers.items():
            log, _ = process.communicate(timeout=300)
            frozen[name] = (process.returncode, log, tmp / f"{name}.pb")
    finally:
        for process in freezers.values():
            if process.poll() is None:
                process.kill()
    assert consumer.returncode == 0, consumer.stderr
    return Consumers(json.loads((tmp / "report.json").read_text()), frozen)


@pytest.mark.parametrize("name", [case[0] for case in CASES])
def test_tf1_session_restores_the_checkpoint_and_equals_keras(cases, consumers, name):
    result = consumers.report[name]
    assert "error" not in result, result.get("error")
    for tensor, expected in cases[name].expected.items():
        np.testing.assert_allclose(np.load(result["outputs"][tensor]), expected, rtol=0, atol=1e-6)


def test_weights_only_checkpoint_lacks_the_optimizer_yet_restores(cases, consumers):
    stored = dict(tf.train.list_variables(cases["mlp-without-optimizer"].prefix))
    assert not [key for key in stored if key.startswith("optimizer/")]
    assert "error" not in consumers.report["mlp-without-optimizer"]


def test_collections_and_global_step_are_there_for_tf1_users(consumers):
    result = consumers.report["two-in-two-out"]
    assert result["inputs"] == ["image:0", "meta:0"]
    assert result["outputs_collection"] == ["label:0", "score:0"]
    assert result["global_step"] == 2


def test_serving_signature_names_inputs_and_outputs(cases):
    signature = cases["convnet"].meta.signature_def[SERVING_SIGNATURE_KEY]
    assert signature.method_name == "tensorflow/serving/predict"
    assert {k: v.name for k, v in signature.inputs.items()} == {"inputs/X": "inputs/X:0"}
    outputs = {k: v.name for k, v in signature.outputs.items()}
    assert outputs == {"output/predict": "output/predict:0"}
    dims = [d.size for d in signature.outputs["output/predict"].tensor_shape.dim]
    assert dims == [-1, 3]
    assert set(cases["convnet"].meta.collection_def) >= {INPUTS_COLLECTION, OUTPUTS_COLLECTION}


@pytest.mark.parametrize("name", FROZEN_BY_TF_TOOL)
def test_tensorflow_freeze_graph_tool_accepts_the_meta_graph(cases, consumers, name):
    returncode, log, frozen = consumers.frozen[name]
    assert returncode == 0, log
    case = cases[name]
    graph_def = read_graph_def(str(frozen))
    assert not [n.name for n in graph_def.node if n.op == "VarHandleOp"]
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        (got,) = session.run(["output/predict:0"], case.feeds)
    np.testing.assert_allclose(got, case.expected["output/predict:0"], rtol=0, atol=1e-6)


def test_graph_has_one_variable_per_key_and_no_values():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((32,)), keras.layers.Dense(200, activation="relu"),
         keras.layers.Dense(200, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)
    variables = keys.checkpoint_variables(model, include_optimizer=False)
    weight_bytes = 4 * model.count_params()
    assert weight_bytes > 190_000

    graph_def = graph_def_of(build_meta_graph(model, model_signature(model), variables))

    assert {n.name for n in graph_def.node if n.op == "VariableV2"} == set(variables)
    assert not [n.name for n in graph_def.node if n.op == "Placeholder"
                and n.attr["dtype"].type == tf.resource.as_datatype_enum]
    assert max(n.ByteSize() for n in graph_def.node if n.op == "Const") < 1_000
    assert graph_def.ByteSize() < weight_bytes / 10


def test_graph_def_is_written_as_text_like_checkpoint_saver_hook(cases, tmp_path):
    meta = cases["mlp"].meta
    path = str(tmp_path / "graph.pbtxt")
    write_graph_def(graph_def_of(meta), path)
    assert (tmp_path / "graph.pbtxt").read_text().startswith("node {")
    assert read_graph_def(path) == graph_def_of(meta)


def python_function_model() -> keras.Model:
    double = keras.layers.Lambda(
        lambda x: tf.py_function(lambda t: t * 2, [x], tf.float32), output_shape=(2,)
    )
    return keras.Sequential([keras.Input((2,)), double])


def lookup_model() -> keras.Model:
    words = keras.Input((1,), dtype="string")
    ids = keras.layers.StringLookup(vocabulary=["a", "b"])(words)
    return keras.Model(words, keras.layers.Embedding(3, 2)(ids))


@pytest.mark.parametrize(
    "build, reason",
    [
        (python_function_model, r"EagerPyFunc, .*a Python function is not in the graph"),
        (lookup_model, r"LookupTableFindV2, .*a lookup table's contents are not in the checkpoint"),
    ],
    ids=["py_function", "lookup-table"],
)
def test_state_a_graph_file_cannot_carry_is_refused(build, reason):
    model = build()
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)
    variables = keys.checkpoint_variables(model, include_optimizer=False)
    expected = "cannot be exported as a MetaGraphDef: it uses " + reason
    with pytest.raises(FreezeError, match=expected):
        build_meta_graph(model, model_signature(model), variables)


def test_an_output_named_like_an_input_is_refused():
    model, _, _ = small_mlp()
    model.optimizer.build(model.trainable_variables)
    variables = keys.checkpoint_variables(model, include_optimizer=False)
    with pytest.raises(FreezeError, match=r"Node name\(s\) x \(traced as x_1\) clash with names"):
        build_meta_graph(model, model_signature(model, ["x"], ["x"]), variables)


def test_a_variable_missing_from_the_map_is_refused():
    model, _, _ = small_mlp()
    model.optimizer.build(model.trainable_variables)
    variables = keys.checkpoint_variables(model, include_optimizer=False)
    del variables["dense/kernel"]
    with pytest.raises(FreezeError, match="reads a variable .* not among the checkpoint variables"):
        build_meta_graph(model, model_signature(model), variables)


def test_a_large_constant_the_model_closes_over_is_kept(tmp_path):
    # Above 128 elements tf.function captures an eager tensor instead of inlining it.
    offset = tf.constant(np.arange(300, dtype="float32"))
    model = keras.Sequential(
        [keras.Input((300,)), keras.layers.Lambda(lambda x: x + offset, output_shape=(300,))]
    )
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)
    variables = keys.checkpoint_variables(model, include_optimizer=False)
    meta = build_meta_graph(model, model_signature(model, ["x"], ["y"]), variables)
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.train.import_meta_graph(meta)
        got = session.run("y:0", {"x:0": np.ones((1, 300), "float32")})
    np.testing.assert_array_equal(got[0], offset.numpy() + 1)


class _GatherNd(keras.layers.Layer):
    """`tf.gather_nd` on a variable: a traced graph TensorFlow cannot import again."""

    def build(self, shape):
        self.table = self.add_weight(shape=(5, 3), name="table")

    def call(self, ids):
        return tf.gather_nd(self.table.value, tf.cast(ids, "int32"))


def test_a_graph_tensorflow_cannot_reimport_costs_the_meta_not_the_checkpoints(tmp_path, caplog):
    from tests.helpers import steps_on_disk
    from tfcheckpointer import CheckpointCallback

    inputs = keras.Input((1,), dtype="int32")
    model = keras.Model(inputs, keras.layers.Dense(1)(_GatherNd()(inputs)))
    model.compile("sgd", "mse")
    model.fit(np.array([[1], [2], [3], [4]]), np.ones((4, 1)), batch_size=2, verbose=0,
              callbacks=[CheckpointCallback(directory=str(tmp_path), every_n_steps=1)])
    assert steps_on_disk(tmp_path) == [1, 2]
    assert not list(tmp_path.glob("*.meta")) and not (tmp_path / "graph.pbtxt").exists()
    (warning,) = [r.getMessage() for r in caplog.records if "without a .meta" in r.getMessage()]
    assert "Cannot build a .meta for model" in warning and "\n" not in warning
