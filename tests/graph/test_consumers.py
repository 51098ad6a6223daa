"""Third-party consumers of our frozen graphs, compared numerically with the live Keras model.

Each model is frozen once for the module with `freeze_model`. Each consumer
then loads the `.pb` as its users do and must reproduce
`model(x, training=False)`:

- `tf1-session`: `import_graph_def` with `input_map` / `return_elements` in a TF1 `Session`;
- `tflite`: `tf.compat.v1.lite.TFLiteConverter.from_frozen_graph` (fixed batch) +
  `tf.lite.Interpreter`;
- `onnx`: `python -m tf2onnx.convert --graphdef ...` + `onnxruntime.InferenceSession`. All
  the models are converted in one child process, since each import of TensorFlow costs seconds.

Where a consumer cannot take a model, the test asserts the failure seen, and
README.md ("Compatibility with TF1 consumers") gives the reason: keep the two in step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf

from tests.helpers import convnet, mlp, rows
from tfcheckpointer.config import FreezeConfig
from tfcheckpointer.graph.files import read_graph_def
from tfcheckpointer.graph.keras_freeze import compute_dtype, freeze_model
from tfcheckpointer.graph.verify import default_tolerance

BATCH = 2  # TFLite needs a fixed batch dimension
STEPS = 5  # sequence length fed to the recurrent models
ATOL = 1e-6

# Runs `python -m tf2onnx.convert` once per case, in one interpreter (runpy does what `-m` does).
TF2ONNX_DRIVER = r'''
import json, runpy, sys, traceback

report = {}
for case in json.load(open(sys.argv[1])):
    sys.argv = ["tf2onnx.convert", "--graphdef", case["pb"], "--output", case["onnx"],
                "--inputs", ",".join(case["inputs"]), "--outputs", ",".join(case["outputs"])]
    try:
        runpy.run_module("tf2onnx.convert", run_name="__main__", alter_sys=True)
        report[case["name"]] = None
    except BaseException:
        report[case["name"]] = traceback.format_exc()
print("REPORT " + json.dumps(report))
'''


def two_in_two_out() -> keras.Model:
    keras.utils.set_random_seed(4)
    image = keras.Input((5,), name="image")
    meta = keras.Input((2,), name="meta")
    hidden = keras.layers.Dense(6, activation="tanh")(keras.layers.Concatenate()([image, meta]))
    score = keras.layers.Dense(1, name="score")(hidden)
    label = keras.layers.Dense(3, activation="softmax", name="label")(hidden)
    return keras.Model([image, meta], [score, label])


def recurrent(
    layer: type[keras.layers.Layer], steps: int | None = None, **options: object
) -> Callable[[], keras.Model]:
    def build() -> keras.Model:
        keras.utils.set_random_seed(5)
        return keras.Sequential(
            [keras.Input((steps, 3)), layer(4, **options), keras.layers.Dense(2)]
        )

    return build


def normalization() -> keras.Model:
    """Inputs standardized by a `Normalization` layer adapted to data of mean 3."""
    keras.utils.set_random_seed(6)
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(1).normal(3.0, 2.0, (64, 4)).astype("float32"))
    return keras.Sequential([keras.Input((4,)), norm, keras.layers.Dense(3)])


def early_stopped() -> keras.Model:
    """The MLP after 3 epochs, put back to its first epoch's weights by EarlyStopping."""
    model = mlp()
    stopper = keras.callbacks.EarlyStopping(
        monitor="loss", mode="max", patience=10, restore_best_weights=True
    )
    x, y = rows(64)
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, callbacks=[stopper])
    return model


def mixed(policy: str) -> Callable[[], keras.Model]:
    """An MLP computing in half precision (`dtype=` per layer: the global policy stays float32)."""

    def build() -> keras.Model:
        keras.utils.set_random_seed(7)
        return keras.Sequential([
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", dtype=policy),
            keras.layers.BatchNormalization(dtype=policy),
            keras.layers.Dense(2, dtype=policy),
        ])

    return build


@dataclasses.dataclass(frozen=True)
class Case:
    build: Callable[[], keras.Model]
    input_names: tuple[str, ...] = ("inputs/X",)
    output_names: tuple[str, ...] = ("output/predict",)


MODELS = {
    "mlp": Case(mlp),  # with batch norm and dropout
    "convnet": Case(convnet),  # with batch norm and dropout
    "two-in-two-out": Case(two_in_two_out, ("in/image", "in/meta"), ("out/score", "out/label")),
    "lstm": Case(recurrent(keras.layers.LSTM)),  # any sequence length: a while loop
    "gru": Case(recurrent(keras.layers.GRU)),
    # The workaround: a fixed length, unrolled, leaves no loop in the graph.
    "lstm-unrolled": Case(recurrent(keras.layers.LSTM, STEPS, unroll=True)),
    "normalization": Case(normalization),
    "early-stopped": Case(early_stopped),
    "mixed-float16": Case(mixed("mixed_float16")),
    "mixed-bfloat16": Case(mixed("mixed_bfloat16")),
}
CONSUMERS = ("tf1-session", "tflite", "onnx")

# What goes wrong where, as listed in the README. The loop of a recurrent layer is frozen
# as TF1 control flow (Enter/Exit/Merge/Switch) over TensorList ops.
TFLITE_TENSOR_LIST = "Lowering tensor list ops is failed"
# TFLite's builtin kernels take no half-precision MatMul; the converter wants Flex ops.
TFLITE_HALF_MATMUL = "'tf.MatMul' op is neither a custom op nor a flex op"
LIMITATIONS = {
    ("lstm", "tflite"): TFLITE_TENSOR_LIST,
    ("gru", "tflite"): TFLITE_TENSOR_LIST,
    ("mixed-float16", "tflite"): TFLITE_HALF_MATMUL,
    ("mixed-bfloat16", "tflite"): TFLITE_HALF_MATMUL,
    # tf2onnx converts, but onnxruntime refuses the mixed float16/bfloat16 MatMul it wrote.
    ("mixed-bfloat16", "onnx"): "Type parameter (T) of Optype (MatMul) bound to different types",
}
RECURRENT = ["lstm", "gru"]
SUPPORTED = [(m, c) for m in MODELS for c in CONSUMERS if (m, c) not in LIMITATIONS]


def limited(consumer: str) -> list[str]:
    return [m for m, c in LIMITATIONS if c == consumer]


@dataclasses.dataclass(frozen=True)
class Frozen:
    """A frozen model, a probe batch per input node and the live model's output per output node."""

    path: str
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    atol: float = ATOL
    """ATOL, or for a half-precision model the tolerance `freeze_model` verifies it with."""

    @property
    def onnx_path(self) -> str:
        return self.path[: -len(".pb")] + ".onnx"


@pytest.fixture(scope="module")
def frozen(tmp_path_factory) -> dict[str, Frozen]:
    directory = tmp_path_factory.mktemp("frozen")
    rng = np.random.default_rng(0)
    result = {}
    for name, case in MODELS.items():
        model = case.build()
        path = str(directory / f"{name}.pb")
        config = FreezeConfig(
            output=path, input_names=case.input_names, output_names=case.output_names
        )
        freeze_model(model, config)
        shapes = [(BATCH, *[STEPS if d is None else d for d in x.shape[1:]]) for x in model.inputs]
        batch = [rng.standard_normal(shape).astype("float32") for shape in shapes]
        expected = keras.tree.flatten(model(batch if len(batch) > 1 else batch[0], training=False))
        expected = [np.asarray(e, np.float32) for e in expected]
        dtype = compute_dtype(model)
        result[name] = Frozen(
            path,
            dict(zip(case.input_names, batch)),
            dict(zip(case.output_names, expected)),
            ATOL if dtype == "float32" else default_tolerance(dtype, expected),
        )
    return result


@pytest.fixture(scope="module")
def onnx_conversions(frozen) -> dict[str, str | None]:
    """Every frozen model converted by the tf2onnx command line: {model: None, or the traceback}."""
    cases = [
        {
            "name": name,
            "pb": f.path,
            "onnx": f.onnx_path,
            "inputs": [f"{i}:0" for i in f.inputs],
            "outputs": [f"{o}:0" for o in f.expected],
        }
        for name, f in frozen.items()
    ]
    listing = os.path.join(os.path.dirname(cases[0]["pb"]), "cases.json")
    with open(listing, "w") as file:
        json.dump(cases, file)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", TF2ONNX_DRIVER, listing],
        capture_output=True, text=True, env=env, timeout=300,
    )
    report = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and report, result.stderr[-3000:]
    return json.loads(report[-1][len("REPORT "):])


def run_tf1_session(f: Frozen) -> dict[str, np.ndarray]:
    with tf.Graph().as_default() as graph:
        placeholders = {
            name: tf.compat.v1.placeholder(tf.float32, [None, *x.shape[1:]])
            for name, x in f.inputs.items()
        }
        outputs = tf.compat.v1.import_graph_def(
            read_graph_def(f.path),
            input_map={f"{name}:0": p for name, p in placeholders.items()},
            return_elements=[f"{name}:0" for name in f.expected],
            name="frozen",
        )
    with tf.compat.v1.Session(graph=graph) as session:
        values = session.run(outputs, {placeholders[name]: x for name, x in f.inputs.items()})
    return dict(zip(f.expected, values))


def tflite_converter(f: Frozen) -> tf.compat.v1.lite.TFLiteConverter:
    return tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        f.path,
        list(f.inputs),
        list(f.expected),
        input_shapes={name: list(x.shape) for name, x in f.inputs.items()},
    )


def run_tflite_model(content: bytes, f: Frozen) -> dict[str, np.ndarray]:
    interpreter = tf.lite.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], f.inputs[detail["name"]])
    interpreter.invoke()
    return {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}


def run_tflite(f: Frozen) -> dict[str, np.ndarray]:
    return run_tflite_model(tflite_converter(f).convert(), f)


def onnx_session(path: str) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def run_onnx(f: Frozen) -> dict[str, np.ndarray]:
    onnx.checker.check_model(f.onnx_path)  # a valid ONNX model, no TensorFlow ops left in it
    session = onnx_session(f.onnx_path)
    values = session.run([f"{o}:0" for o in f.expected], {f"{i}:0": x for i, x in f.inputs.items()})
    return dict(zip(f.expected, values))


RUNNERS = {"tf1-session": run_tf1_session, "tflite": run_tflite, "onnx": run_onnx}


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
@pytest.mark.parametrize("model, consumer", SUPPORTED)
def test_consumer_reproduces_the_live_model(request, frozen, model, consumer):
    if consumer == "onnx":
        failure = request.getfixturevalue("onnx_conversions")[model]
        assert failure is None, failure
    f = frozen[model]
    got = RUNNERS[consumer](f)
    assert set(got) == set(f.expected)
    for name, want in f.expected.items():
        np.testing.assert_allclose(
            got[name], want, rtol=0, atol=f.atol, err_msg=f"{model} {consumer} {name}"
        )


@pytest.mark.parametrize("model", limited("tflite"))
def test_tflite_cannot_convert_what_the_readme_says(frozen, model):
    with pytest.raises(Exception, match=re.escape(LIMITATIONS[model, "tflite"])) as error:
        run_tflite(frozen[model])
    assert error.type.__name__ == "ConverterError"


@pytest.mark.parametrize("model", limited("onnx"))
def test_onnxruntime_cannot_load_what_the_readme_says(onnx_conversions, frozen, model):
    assert onnx_conversions[model] is None  # tf2onnx itself converts it
    with pytest.raises(Exception, match=re.escape(LIMITATIONS[model, "onnx"])):
        run_onnx(frozen[model])


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
@pytest.mark.parametrize("model", RECURRENT)
def test_tflite_select_tf_ops_convert_but_the_wheel_interpreter_lacks_flex(frozen, model):
    # The converter's own suggestion: it converts, yet this interpreter cannot run Flex ops.
    converter = tflite_converter(frozen[model])
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS
    ]
    # TensorFlow's own switch, the one its ConverterError names (no public API exists for it).
    converter._experimental_lower_tensor_list_ops = False
    content = converter.convert()
    with pytest.raises(RuntimeError, match=r"FlexTensorListReserve\) failed to prepare"):
        run_tflite_model(content, frozen[model])

