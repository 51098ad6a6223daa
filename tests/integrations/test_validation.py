"""The validation data the champion gate scores on: what it takes, and one clear error for the rest."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfcheckpointer.errors import ConfigError
from tfcheckpointer.integrations import validation
from tfcheckpointer.integrations.validation import as_validation_data, require_validation_data

X = np.arange(12, dtype="float32").reshape(6, 2)
Y = np.arange(6)


def test_arrays_are_read_in_batches_and_a_dataset_element_by_element(monkeypatch):
    monkeypatch.setattr(validation, "BATCH_SIZE", 4)
    batches = list(as_validation_data(({"a": X}, Y, Y * 2.0), source="s").batches())
    assert [len(y) for _, y, _ in batches] == [4, 2]
    np.testing.assert_array_equal(batches[1][0]["a"], X[4:])
    np.testing.assert_array_equal(batches[1][2], [8.0, 10.0])
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(5)
    read = list(as_validation_data(dataset, source="s").batches())
    assert [(len(x), len(y), w) for x, y, w in read] == [(5, 5, None), (1, 1, None)]
    assert isinstance(read[0][0], np.ndarray)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (tf.data.Dataset.from_tensor_slices((X, Y)).batch(2).repeat(),
         r"the validation dataset repeats forever HINT: drop \.repeat\(\), or pass \.take\(N\) of it"),
        ((x for x in [X]), r"expected the validation data as \(x, y\) or \(x, y, sample_weight\) "
         r"arrays, or a finite tf.data.Dataset of such batches, got generator"),
        ((X,), r"expected the validation data as .*, got tuple"),
        ((X, None), r"expected the validation data as .*, got tuple"),
        ((X, [0, 1]), r"expected the validation data as .*; it holds something else"),
        ((X, Y[:4]), r"the validation data's arrays have different numbers of rows \[4, 6\]"),
        ((X[:0], Y[:0]), r"the validation data's arrays have no rows"),
    ],
)
def test_what_cannot_be_read_twice_as_batches_is_one_clear_error(data, message):
    with pytest.raises(ConfigError, match=rf"^job.yaml: export.promote_if: {message}"):
        as_validation_data(data, source="job.yaml")


def test_none_given_is_refused_with_where_to_give_it():
    with pytest.raises(ConfigError, match=r"none was given HINT: pass validation_data=\(x, y\) to "
                       r"CheckpointCallback; in a job file, return validation_data from the data factory"):
        require_validation_data(None, source="job.yaml")


def test_the_session_hook_refuses_validation_data(tmp_path):
    from tfcheckpointer.integrations.session_hook import CheckpointSessionHook

    with pytest.raises(ConfigError, match=r"validation_data: is not supported by CheckpointSessionHook"):
        CheckpointSessionHook(str(tmp_path), every_n_steps=1, validation_data=(X, Y))
