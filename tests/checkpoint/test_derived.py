"""`derived`: a layer's state derived from its variables, redone after a restore, and found stale."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.helpers.derived_models import KINDS, build, probe
from tfcheckpointer.checkpoint.derived import finalize_derived_state, stale_derived_state


def assign_from(target, source) -> None:
    """Assign every variable as a Saver restore does: values only, no layer hook."""
    for mine, theirs in zip(target.variables, source.variables):
        mine.assign(theirs)


def outputs(model) -> np.ndarray:
    return model(probe(), training=False).numpy()


@pytest.mark.parametrize("kind", ["normalization", "custom"])
def test_finalize_recomputes_what_a_layer_derives_from_its_variables(kind):
    trained, restored = build(kind, adapt=True), build(kind)
    assign_from(restored, trained)
    assert np.abs(outputs(restored) - outputs(trained)).max() > 0.5  # still the initial state
    assert finalize_derived_state(restored) == [restored.layers[0].name]
    np.testing.assert_array_equal(outputs(restored), outputs(trained))


def test_finalize_leaves_keras_own_load_hooks_alone():
    # Dense's hook would merge the LoRA factors into the kernel and zero them.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.layers[0].enable_lora(2)
    model.layers[0].lora_kernel_b.assign(np.ones((2, 3), "float32"))
    before = [v.numpy() for v in model.variables]
    assert finalize_derived_state(model) == []
    for value, variable in zip(before, model.variables):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_stale_derived_state_names_the_layer_and_leaves_the_model_as_it_was():
    trained, restored = build("normalization", adapt=True), build("normalization")
    assign_from(restored, trained)
    stale_outputs = outputs(restored)
    assert stale_derived_state(restored) == [f"{restored.layers[0].name} (mean, variance)"]
    np.testing.assert_array_equal(outputs(restored), stale_outputs)


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_as_trained_or_restored_has_no_stale_state(kind):
    trained, restored = build(kind, adapt=True), build(kind)
    assign_from(restored, trained)
    finalize_derived_state(restored)
    assert stale_derived_state(trained) == stale_derived_state(restored) == []
