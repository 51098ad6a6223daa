"""Frozen GraphDefs: parity with the live model in a TF1 session, naming, sidecar, refusals."""

from __future__ import annotations

import hashlib
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import convnet, mlp, recurrent, run_in_tf1_session, two_in_two_out
from tests.helpers.derived_models import build as derived_model
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.config import FreezeConfig
from tfcheckpointer.errors import FreezeError, VerificationError
from tfcheckpointer.graph.files import read_graph_def
from tfcheckpointer.graph.keras_freeze import (
    compute_dtype,
    freeze_graph_def,
    freeze_model,
    model_signature,
    verify_graph_def,
)
from tfcheckpointer.graph.nodes import VARIABLE_OPS
from tfcheckpointer.graph.verify import default_tolerance


@pytest.mark.parametrize(
    "build, inputs",
    [
        (mlp, [np.random.default_rng(0).standard_normal((7, 4)).astype("float32")]),
        (convnet, [np.random.default_rng(1).standard_normal((3, 6, 6, 2)).astype("float32")]),
        (recurrent, [np.random.default_rng(2).standard_normal((2, 5, 3)).astype("float32")]),
    ],
    ids=["mlp", "convnet-batchnorm-dropout", "lstm"],
)
def test_frozen_graph_equals_the_live_model_in_a_tf1_session(tmp_path, build, inputs):
    model = build()
    config = FreezeConfig(
        output=str(tmp_path / "frozen.pb"), input_names=("inputs/X",), output_names=("output/predict",)
    )
    frozen = freeze_model(model, config)
    assert frozen.max_abs_diff == 0.0
    (got,) = run_in_tf1_session(tmp_path / "frozen.pb", {"inputs/X": inputs[0]}, ["output/predict"])
    np.testing.assert_allclose(got, model(inputs[0], training=False).numpy(), rtol=0, atol=1e-6)


def test_no_variables_or_devices_remain(tmp_path):
    freeze_model(mlp(), FreezeConfig(output=str(tmp_path / "frozen.pb")))
    graph_def = read_graph_def(str(tmp_path / "frozen.pb"))
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    assert not [n.name for n in nodes if n.op in VARIABLE_OPS]
    assert not [n.name for n in nodes if n.op == "Placeholder" and n.attr["dtype"].type == tf.resource.as_datatype_enum]
    assert not [n.name for n in nodes if n.device]


def test_multi_input_multi_output_defaults_to_the_model_names(tmp_path):
    model = two_in_two_out()
    frozen = freeze_model(model, FreezeConfig(output=str(tmp_path / "m.pb")))
    sidecar = json.loads(open(frozen.sidecar).read())
    assert [i["name"] for i in sidecar["inputs"]] == ["image", "meta"]
    assert [o["name"] for o in sidecar["outputs"]] == ["label", "score"]
    rng = np.random.default_rng(0)
    feeds = {"image": rng.standard_normal((4, 5)).astype("float32"),
             "meta": rng.standard_normal((4, 2)).astype("float32")}
    label, score = run_in_tf1_session(tmp_path / "m.pb", feeds, ["label", "score"])
    expected = model(feeds, training=False)
    np.testing.assert_allclose(label, expected["label"].numpy(), atol=1e-6)
    np.testing.assert_allclose(score, expected["score"].numpy(), atol=1e-6)


def test_multi_io_with_configured_names(tmp_path):
    config = FreezeConfig(
        output=str(tmp_path / "m.pb"),
        input_names=("in/image", "in/meta"),
        output_names=("out/label", "out/score"),
    )
    signature = model_signature(two_in_two_out(), config.input_names, config.output_names)
    assert [(i.tensor, i.shape) for i in signature.inputs] == [("in/image:0", (None, 5)), ("in/meta:0", (None, 2))]
    freeze_model(two_in_two_out(), config)
    names = {n.name for n in read_graph_def(str(tmp_path / "m.pb")).node}
    assert {"in/image", "in/meta", "out/label", "out/score"} <= names


def test_pbtxt_output_is_text(tmp_path):
    freeze_model(mlp(), FreezeConfig(output=str(tmp_path / "frozen.pbtxt")))
    text = (tmp_path / "frozen.pbtxt").read_text()
    assert text.startswith("node {")
    assert len(read_graph_def(str(tmp_path / "frozen.pbtxt")).node) > 5


def test_sidecar_describes_the_graph(tmp_path, data):
    model = mlp()
    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=100,
        freeze={"output": str(tmp_path / "frozen.pb"), "input_names": ["inputs/X"], "output_names": ["output/predict"]},
    )
    model.fit(*data, batch_size=16, epochs=1, callbacks=[callback], verbose=0)
    sidecar = json.loads((tmp_path / "frozen.pb.json").read_text())
    assert sidecar["inputs"] == [{"name": "inputs/X", "tensor": "inputs/X:0", "dtype": "float32", "shape": [None, 4]}]
    assert sidecar["outputs"] == [{"name": "output/predict", "tensor": "output/predict:0", "dtype": "float32", "shape": [None, 1]}]
    assert sidecar["step"] == 4
    assert sidecar["checkpoint"] == str(tmp_path / "ckpt" / "model.ckpt-4")
    assert sidecar["sha256"] == hashlib.sha256((tmp_path / "frozen.pb").read_bytes()).hexdigest()
    assert sidecar["tensorflow_version"] == tf.__version__
    assert sidecar["keras_version"] == keras.__version__
    assert sidecar["verified"] is True and sidecar["max_abs_diff"] == 0.0
    assert (sidecar["verify_tolerance"], sidecar["compute_dtype"]) == (1e-5, "float32")


class NoisyAtInference(keras.layers.Layer):
    """Adds fresh noise on every call, so no frozen graph can match the live model."""

    def call(self, inputs, training=None):
        return inputs + tf.random.uniform(tf.shape(inputs))


def test_a_mismatch_publishes_nothing_and_says_by_how_much(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), NoisyAtInference()])
    output = tmp_path / "frozen.pb"
    with pytest.raises(VerificationError, match=r"differs from the live model by up to 0\.\d+ \(tolerance 1e-05\) at index \[\d, \d\]: graph 0\.\d+, model 0\.\d+; nothing was published"):
        freeze_model(model, FreezeConfig(output=str(output)))
    assert os.listdir(tmp_path) == []


def test_verification_compares_against_the_current_weights():
    model = mlp()
    signature = model_signature(model)
    graph_def = freeze_graph_def(model, signature)
    probe = [np.ones((2, 4), "float32")]
    assert verify_graph_def(graph_def, model, signature, probe, 0.0) == 0.0
    model.layers[-1].bias.assign([0.5])
    with pytest.raises(VerificationError) as raised:
        verify_graph_def(graph_def, model, signature, probe, 1e-3)
    assert raised.value.max_abs_diff == pytest.approx(0.5)


def test_lookup_tables_cannot_be_frozen(tmp_path):
    words = keras.Input((1,), dtype="string")
    ids = keras.layers.StringLookup(vocabulary=["a", "b"])(words)
    model = keras.Model(words, keras.layers.Embedding(3, 2)(ids))
    with pytest.raises(FreezeError, match=r"cannot be frozen: it uses .*LookupTableFindV2.*lookup tables"):
        freeze_model(model, FreezeConfig(output=str(tmp_path / "f.pb")))
    assert os.listdir(tmp_path) == []


def test_python_functions_cannot_be_frozen(tmp_path):
    double = keras.layers.Lambda(
        lambda x: tf.py_function(lambda t: t * 2, [x], tf.float32), output_shape=(2,)
    )
    model = keras.Sequential([keras.Input((2,)), double])
    with pytest.raises(FreezeError, match="it uses EagerPyFunc"):
        freeze_model(model, FreezeConfig(output=str(tmp_path / "f.pb")))


def test_size_is_checked_before_converting(tmp_path):
    with pytest.raises(FreezeError, match=r"has \d{3} bytes of variables; .* under 200 bytes \(the 2 GiB protobuf limit\)"):
        freeze_model(mlp(), FreezeConfig(output=str(tmp_path / "f.pb")), size_limit=200)
    assert os.listdir(tmp_path) == []


def test_one_name_per_input_and_output(tmp_path):
    config = FreezeConfig(output=str(tmp_path / "m.pb"), input_names=("only_one",))
    with pytest.raises(FreezeError, match=r"freeze.input_names has 1 name\(s\) \['only_one'\], but the model has 2 input\(s\)"):
        freeze_model(two_in_two_out(), config)


def test_graph_size_is_checked_after_converting(tmp_path):
    # The variables fit under 2,000 bytes; the graph around them does not.
    with pytest.raises(FreezeError, match=r"The frozen graph would be [\d,]+ bytes; it must stay under 2,000 bytes"):
        freeze_model(mlp(), FreezeConfig(output=str(tmp_path / "f.pb")), size_limit=2000)
    assert os.listdir(tmp_path) == []


def _run_frozen_as_is(path, feeds: dict, output: str) -> np.ndarray:
    """Run a frozen graph feeding its own placeholders, whose shapes TensorFlow then checks."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(read_graph_def(str(path)), name="")
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(f"{output}:0", {f"{name}:0": value for name, value in feeds.items()})


def _rows_for_a_sequential_without_input(count=64):
    rng = np.random.default_rng(6)
    return rng.standard_normal((count, 8)).astype("float32"), rng.standard_normal((count, 2)).astype("float32")


@pytest.mark.parametrize("feed", ["arrays", "dataset"])
def test_a_model_built_from_its_first_batch_freezes_with_the_batch_dimension_open(tmp_path, feed):
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = _rows_for_a_sequential_without_input()
    callback = CheckpointCallback(
        directory=str(tmp_path / "ckpt"), every_n_steps=100,
        freeze={"output": str(tmp_path / "f.pb"), "input_names": ["inputs/X"], "output_names": ["output/y"]},
    )
    if feed == "arrays":  # one batch of all 64 rows: Keras builds the model for exactly 64
        model.fit(x, y, batch_size=64, callbacks=[callback], verbose=0)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True)
        model.fit(dataset, callbacks=[callback], verbose=0, shuffle=False)
    assert model.inputs[0].shape[0] in (16, 64)  # what Keras fixed; the frozen graph must not
    for rows in (1, 7):
        got = _run_frozen_as_is(tmp_path / "f.pb", {"inputs/X": x[:rows]}, "output/y")
        np.testing.assert_allclose(got, model(x[:rows], training=False).numpy(), atol=1e-6)
    sidecar = json.loads((tmp_path / "f.pb.json").read_text())
    assert sidecar["inputs"][0]["shape"] == [None, 8]
    assert sidecar["outputs"][0]["shape"] == [None, 2]


def test_the_meta_graph_of_a_model_built_from_its_first_batch_takes_any_batch(tmp_path):
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = _rows_for_a_sequential_without_input()
    callback = CheckpointCallback(
        directory=str(tmp_path), every_n_steps=100,
        freeze={"output": str(tmp_path / "f.pb"), "input_names": ["inputs/X"], "output_names": ["output/y"],
                "at_train_end": False},
    )
    model.fit(x, y, batch_size=64, callbacks=[callback], verbose=0)
    graph_def = read_graph_def(str(tmp_path / "graph.pbtxt"))
    (placeholder,) = [n for n in graph_def.node if n.name == "inputs/X"]
    assert [d.size for d in placeholder.attr["shape"].shape.dim] == [-1, 8]
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        saver = tf.compat.v1.train.import_meta_graph(str(tmp_path / "model.ckpt-1.meta"))
        saver.restore(session, str(tmp_path / "model.ckpt-1"))
        got = session.run("output/y:0", {"inputs/X:0": x[:1]})
    np.testing.assert_allclose(got, model(x[:1], training=False).numpy(), atol=1e-6)


def test_freeze_refuses_a_model_whose_layers_compute_with_stale_derived_state(tmp_path):
    model = derived_model("normalization", adapt=True)
    model.layers[0].adapt_mean.assign(np.zeros(4, "float32"))  # as a Saver restore assigns it
    with pytest.raises(
        FreezeError,
        match=re.escape(
            f"Model {model.name!r} computes with derived state that its variables no longer give: "
            f"{model.layers[0].name} (mean). A frozen graph of it would not compute what the model "
            "computes once Keras loads its weights. HINT: the variables were assigned without the "
            "layers' load hooks;"
        ),
    ):
        freeze_model(model, FreezeConfig(output=str(tmp_path / "m.pb")))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "compute, expected, tolerance",
    [
        (None, [np.array([3.0])], 1e-5),
        ("float32", [np.array([300.0])], 1e-5),
        # 8 epsilons of the half type times the largest finite |output|, at least 1.
        ("float16", [np.array([0.5, -0.25])], 8 * 2**-10),
        ("float16", [np.array([0.5]), np.array([-3.0, np.inf, np.nan])], 8 * 2**-10 * 3),
        ("bfloat16", [np.array([[100.0, 2.0]])], 8 * 2**-7 * 100),
    ],
)
def test_default_tolerance_follows_the_compute_dtype(compute, expected, tolerance):
    assert default_tolerance(compute, expected) == tolerance


def mixed_mlp(head_dtype=None):
    """A small MLP under the global policy; `head_dtype="float32"` is Keras's advice for mixed models."""
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [keras.Input((4,), name="features"), keras.layers.Dense(16, activation="relu"),
         keras.layers.BatchNormalization(), keras.layers.Dense(2, dtype=head_dtype)]
    )


@pytest.mark.parametrize(
    "policy, head, expected",
    [("float32", None, "float32"), ("mixed_float16", None, "float16"),
     ("mixed_float16", "float32", "float16"), ("mixed_bfloat16", None, "bfloat16")],
    indirect=["policy"],
)
def test_compute_dtype_is_the_least_precise_layers(policy, head, expected):
    assert compute_dtype(mixed_mlp(head)) == expected


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_mixed_precision_graph_keeps_float32_outputs(tmp_path, policy):
    model = mixed_mlp()
    assert model.outputs[0].dtype != "float32"  # the model itself gives half precision
    frozen = freeze_model(model, FreezeConfig(output=str(tmp_path / "frozen.pb")))
    x = np.random.default_rng(0).standard_normal((5, 4)).astype("float32")
    (result,) = run_in_tf1_session(frozen.path, {"features": x}, ["dense_1"])
    assert result.dtype == np.float32
    sidecar = json.loads((tmp_path / "frozen.pb.json").read_text())
    assert [t["dtype"] for t in sidecar["inputs"] + sidecar["outputs"]] == ["float32", "float32"]
    assert sidecar["compute_dtype"] == compute_dtype(model)
    # The derived tolerance, recorded, is what the (nonzero) difference was checked against.
    assert 1e-5 < sidecar["verify_tolerance"] < 1
    assert sidecar["max_abs_diff"] <= sidecar["verify_tolerance"]
    np.testing.assert_allclose(result, model(x, training=False), atol=sidecar["verify_tolerance"])


@pytest.mark.parametrize("policy", ["mixed_bfloat16"], indirect=True)
def test_a_tolerance_the_user_gives_wins_over_the_derived_one(tmp_path, policy):
    freeze_model(mixed_mlp(), FreezeConfig(output=str(tmp_path / "f.pb"), verify_tolerance=0.5))
    sidecar = json.loads((tmp_path / "f.pb.json").read_text())
    assert (sidecar["verify_tolerance"], sidecar["compute_dtype"]) == (0.5, "bfloat16")
