"""Verification inputs: NaN-aware comparison, real probe batches in every form, bad probes refused."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import masked, mlp, two_in_two_out
from tfcheckpointer.config import FreezeConfig
from tfcheckpointer.errors import FreezeError, VerificationError
from tfcheckpointer.graph.keras_freeze import freeze_model
from tfcheckpointer.graph.probe import Probe, resolve_probe
from tfcheckpointer.graph.signature import ModelSignature, TensorInfo
from tfcheckpointer.graph.verify import compare_outputs
from tfcheckpointer.integrations.job import data_probe

NAN = float("nan")
ONE_OUTPUT = ModelSignature((), (TensorInfo("y", "float32", (None, 2)),))


def test_nan_and_inf_at_the_same_positions_count_as_equal():
    model = np.array([[1.0, NAN], [np.inf, 2.0]])
    graph = np.array([[1.5, NAN], [np.inf, 2.0]])
    assert compare_outputs(ONE_OUTPUT, [model], [graph], tolerance=1.0) == 0.5


def test_nan_at_another_position_names_the_output_and_where():
    model = np.array([[1.0, NAN], [3.0, 2.0]])
    graph = np.array([[1.0, 4.0], [NAN, 2.0]])
    with pytest.raises(VerificationError, match=r"output 'y' differs from the live model by up to inf \(tolerance 1e-05\) at index \[0, 1\]: graph 4, model nan; nothing was published") as raised:
        compare_outputs(ONE_OUTPUT, [model], [graph], tolerance=1e-5)
    assert raised.value.index == (0, 1)


def test_the_worst_element_is_named():
    with pytest.raises(VerificationError, match=r"by up to 0\.5 \(tolerance 0\.1\) at index \[1, 0\]: graph 2\.5, model 3"):
        compare_outputs(ONE_OUTPUT, [np.array([[1.0, 1.0], [3.0, 2.0]])],
                        [np.array([[1.2, 1.0], [2.5, 2.0]])], tolerance=0.1)


def test_a_masked_embedding_model_verifies_on_real_rows(tmp_path):
    # The live model gives NaN for all-padding rows; real rows have none.
    model = masked.build_model()
    assert np.isnan(model(np.zeros((1, masked.LENGTH), "int32")).numpy()).all()
    frozen = freeze_model(model, FreezeConfig(output=str(tmp_path / "f.pb")), probe=masked.tokens(5))
    assert frozen.max_abs_diff == 0.0
    sidecar = json.loads((tmp_path / "f.pb.json").read_text())
    assert sidecar["probe"] == "probe argument"


def test_the_random_default_is_recorded_in_the_sidecar(tmp_path):
    freeze_model(mlp(), FreezeConfig(output=str(tmp_path / "f.pb")))
    assert json.loads((tmp_path / "f.pb.json").read_text())["probe"] == "random"


def _image_meta(rows):
    rng = np.random.default_rng(0)
    return rng.standard_normal((rows, 5)), rng.standard_normal((rows, 2))  # float64: cast


@pytest.mark.parametrize(
    "probe",
    [
        lambda: list(_image_meta(3)),
        lambda: dict(zip(["image", "meta"], _image_meta(3))),
        lambda: lambda: _image_meta(3),
        lambda: tf.data.Dataset.from_tensor_slices((dict(zip(["image", "meta"], _image_meta(6))), np.zeros(6))).batch(3),
    ],
    ids=["list", "dict", "callable", "dataset-of-x-y"],
)
def test_a_probe_can_be_arrays_a_dict_a_callable_or_a_dataset(tmp_path, probe):
    frozen = freeze_model(two_in_two_out(), FreezeConfig(output=str(tmp_path / "f.pb")), probe=probe())
    assert frozen.max_abs_diff is not None and frozen.max_abs_diff < 1e-6
    assert json.loads((tmp_path / "f.pb.json").read_text())["probe"] == "probe argument"


@pytest.mark.parametrize(
    "probe, message",
    [
        ([np.zeros((2, 5))], r"The probe \(probe argument\) has 1 array\(s\), but the graph has 2 input\(s\) \['image', 'meta'\]\. HINT: give one array per input"),
        ({"image": np.zeros((2, 5))}, r"The probe \(probe argument\) has no array for input 'meta'; it has keys \['image'\]"),
        ([np.zeros((2, 4)), np.zeros((2, 2))], r"Probe array for input 'image' \(probe argument\) has shape \(2, 4\); expected \(None, 5\)"),
        ([np.zeros((2, 5)), np.array([["a", "b"]] * 2)], r"Probe array for input 'meta' \(probe argument\) has dtype <U1; expected float32"),
        ([np.zeros((0, 5)), np.zeros((0, 2))], r"Probe array for input 'image' \(probe argument\) has no rows"),
        (tf.data.Dataset.from_tensor_slices(np.zeros((0, 5))), r"The probe dataset \(probe argument\) is empty"),
    ],
    ids=["count", "missing-key", "shape", "dtype", "no-rows", "empty-dataset"],
)
def test_a_bad_probe_is_one_clear_error_and_writes_nothing(tmp_path, probe, message):
    with pytest.raises(FreezeError, match=message):
        freeze_model(two_in_two_out(), FreezeConfig(output=str(tmp_path / "f.pb")), probe=probe)
    assert os.listdir(tmp_path) == []


def test_floats_are_not_accepted_for_integer_inputs(tmp_path):
    with pytest.raises(FreezeError, match=r"input 'tokens' \(probe argument\) has dtype float64; expected int32"):
        freeze_model(masked.build_model(), FreezeConfig(output=str(tmp_path / "f.pb")), probe=np.ones((2, 3)))


def test_fit_data_gives_validation_rows_else_training_rows_but_never_a_generator():
    x, valid = np.zeros((10, 3)), np.ones((10, 3))
    probe = data_probe({"x": x, "y": x, "validation_data": (valid, valid)}, rows=4)
    assert (probe.data is valid, probe.origin, probe.rows) == (True, "validation data", 4)
    dataset = tf.data.Dataset.from_tensor_slices((x, x)).batch(5)
    assert data_probe({"x": dataset}, rows=4).origin == "training data"
    assert data_probe({"x": iter([x]), "y": x}, rows=4) is None


class Batches(keras.utils.PyDataset):
    """Two batches of 5 rows of (x, y)."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        return np.full((5, 3), index, "float64"), np.zeros((5, 1))


def test_a_py_dataset_gives_its_first_batch_cut_to_the_rows_asked_for():
    signature = ModelSignature((TensorInfo("x", "float32", (None, 3)),), ())
    (x,) = resolve_probe(Probe(Batches(), "training data", rows=2), signature, batch_size=4).data
    assert (x.shape, x.dtype, x.max()) == ((2, 3), np.float32, 0.0)
