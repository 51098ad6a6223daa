"""Verification inputs (the probe batch): where they come from, and checking them against a signature.

A frozen graph is run on the probe batch and compared with the live model.
Real inputs make that comparison meaningful (a random batch can hold rows no
real input has, such as all-padding sequences); where none are given, a
deterministic random batch is used (`verify.default_probe`). In order of
precedence a probe comes from:

1. `probe=` (Python) or `freeze.probe` (a factory in the job file);
2. the job's validation data, else its training data (`run_job`);
3. the random default.

A `Probe` holds the data as given (arrays, a mapping, a `tf.data.Dataset`, a
zero-argument callable) and says where it came from, for errors and the
sidecar. `resolve_probe` turns it into one checked array per input.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np
import tensorflow as tf

from tfcheckpointer.config.factories import resolve_factory
from tfcheckpointer.config.schema import FactoryConfig, FreezeConfig
from tfcheckpointer.errors import FreezeError, first_line
from tfcheckpointer.graph.signature import ModelSignature, TensorInfo
from tfcheckpointer.graph.verify import default_probe

RANDOM = "random"
"""The origin of the default probe batch."""
ARGUMENT = "probe argument"
"""The origin of a probe given as `probe=`."""


@dataclasses.dataclass(frozen=True)
class Probe:
    """Verification inputs as given, and where they came from.

    Attributes:
        data: One array per input (a single array for one input), a mapping
            of input name to array, a `tf.data.Dataset` or Keras `PyDataset`
            (its first batch; an `(x, y)` element gives `x`, as in `fit`), or
            a zero-argument callable returning any of these.
        origin: Where the data came from, e.g. `validation data`; the
            sidecar's `"probe"`.
        rows: Use at most this many rows of each array; None uses them all.
    """

    data: Any
    origin: str
    rows: int | None = None


ProbeLike = Union[Probe, np.ndarray, Sequence[Any], Mapping[str, Any], Callable[[], Any], None]
"""What `probe=` accepts: a `Probe`, its `data`, or None for the next source in precedence."""


def as_probe(probe: ProbeLike, origin: str = ARGUMENT) -> Probe | None:
    """`probe` as a `Probe` (data given directly comes from `origin`); None stays None."""
    if probe is None or isinstance(probe, Probe):
        return probe
    return Probe(probe, origin)


def factory_probe(factory: FactoryConfig, *, source: str) -> Probe:
    """`freeze.probe`: the factory's result, called when the probe is resolved.

    The factory is imported now, so a misspelt reference fails before training.
    """
    load = resolve_factory(factory, key="freeze.probe.factory", source=source)
    return Probe(lambda: load(**factory.kwargs), f"freeze.probe factory {factory.factory}")


def configured_probe(probe: ProbeLike, config: FreezeConfig | None, *, source: str) -> Probe | None:
    """`probe=` if given, else the `freeze.probe` factory of `config`, else None."""
    if probe is not None or config is None or config.probe is None:
        return as_probe(probe)
    return factory_probe(config.probe, source=source)


def resolve_probe(
    probe: ProbeLike,
    signature: ModelSignature,
    *,
    batch_size: int,
    input_keys: Sequence[Sequence[str]] | None = None,
) -> Probe:
    """The probe as a checked list of one array per input, each of the input's dtype.

    A callable is called, a dataset gives its first batch, and a mapping is
    matched by input name. Arrays are cast to the input's dtype when the cast
    keeps their kind (float64 to float32, int64 to int32). Without a probe,
    the random default of `batch_size` rows.

    Args:
        probe: The probe, or None for the random default.
        signature: The graph's inputs.
        batch_size: Rows of the random default.
        input_keys: For each input, the keys a mapping may hold it under
            (the input's node name always counts).

    Raises:
        FreezeError: The probe cannot be read, or does not fit the inputs:
            the number of arrays, a missing key, a shape or a dtype.
    """
    probe = as_probe(probe)
    if probe is None:
        return Probe(default_probe(signature, batch_size), RANDOM)
    data = _first_batch(probe)
    arrays = _per_input(data, signature, probe.origin, input_keys)
    return Probe([_checked(a, spec, probe) for a, spec in zip(arrays, signature.inputs)], probe.origin)


def _first_batch(probe: Probe) -> Any:
    data = probe.data
    if callable(data):
        try:
            data = data()
        except Exception as error:  # the user's code; its own error says what went wrong
            raise FreezeError(f"The probe ({probe.origin}) failed: {first_line(error)}") from error
    if isinstance(data, tf.data.Dataset) or _is_py_dataset(data):
        if isinstance(data, tf.data.Dataset):
            element = next(iter(data.take(1)), None)
        else:
            element = data[0] if len(data) else None
        if element is None:
            raise FreezeError(f"The probe dataset ({probe.origin}) is empty.")
        # A dataset element is `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`, as in `fit`.
        data = element[0] if isinstance(element, (tuple, list)) else element
    return tf.nest.map_structure(lambda t: t.numpy() if isinstance(t, tf.Tensor) else t, data)


def _is_py_dataset(data: Any) -> bool:
    keras = sys.modules.get("keras")  # a PyDataset means Keras is loaded already
    return keras is not None and isinstance(data, keras.utils.PyDataset)


def _per_input(
    data: Any,
    signature: ModelSignature,
    origin: str,
    input_keys: Sequence[Sequence[str]] | None,
) -> list[Any]:
    names = [spec.name for spec in signature.inputs]
    if isinstance(data, Mapping):
        keys = input_keys or [()] * len(names)
        arrays = []
        for name, aliases in zip(names, keys):
            key = next((k for k in (name, *aliases) if k in data), None)
            if key is None:
                raise FreezeError(
                    f"The probe ({origin}) has no array for input {name!r}; it has keys "
                    f"{sorted(map(str, data))}. HINT: key it by the input names {names}."
                )
            arrays.append(data[key])
        return arrays
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(names):
        raise FreezeError(
            f"The probe ({origin}) has {len(arrays)} array(s), but the graph has "
            f"{len(names)} input(s) {names}. HINT: give one array per input, in this order, "
            "or a dict keyed by these names."
        )
    return arrays


def _checked(value: Any, spec: TensorInfo, probe: Probe) -> np.ndarray:
    expected_dtype = np.dtype(tf.as_dtype(spec.dtype).as_numpy_dtype)
    expected_shape = "any shape" if spec.shape is None else _shape_text(spec.shape)
    where = f"Probe array for input {spec.name!r} ({probe.origin})"
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise FreezeError(
            f"{where} is not an array ({first_line(error)}); expected {spec.dtype} "
            f"of shape {expected_shape}."
        ) from None
    if not np.can_cast(array.dtype, expected_dtype, casting="same_kind"):
        raise FreezeError(
            f"{where} has dtype {array.dtype}; expected {spec.dtype} (or a dtype of the "
            "same kind, which is cast)."
        )
    if spec.shape is not None and not _fits(array.shape, spec.shape):
        raise FreezeError(
            f"{where} has shape {_shape_text(array.shape)}; expected {expected_shape} "
            "(None: any size)."
        )
    if array.ndim:
        if probe.rows is not None:
            array = array[: probe.rows]
        if not len(array):
            raise FreezeError(f"{where} has no rows; verification needs at least one.")
    return array.astype(expected_dtype, copy=False)


def _fits(shape: Sequence[int], expected: Sequence[int | None]) -> bool:
    return len(shape) == len(expected) and all(
        want is None or have == want for have, want in zip(shape, expected)
    )


def _shape_text(shape: Sequence[int | None]) -> str:
    return str(tuple(shape))
