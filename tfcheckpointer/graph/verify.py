"""Checking a frozen graph: run it as a TF1 consumer would and compare with a reference.

The reference is the live model (`keras_freeze`), the restored TF1 session
(`session_freeze`), or whatever a caller passes to `publish_frozen_graph`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfcheckpointer.errors import FreezeError, VerificationError
from tfcheckpointer.graph.files import graph_def_problem
from tfcheckpointer.graph.runner import GraphRunner
from tfcheckpointer.graph.signature import ModelSignature
from tfcheckpointer.graph.stream import read_fields


def probe_inputs(signature: ModelSignature, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """A deterministic batch for every input: normal floats, small non-negative ints."""
    rng = np.random.default_rng(seed)
    batch = []
    for spec in signature.inputs:
        shape = [batch_size] + [d if d is not None else 4 for d in spec.shape[1:]]
        dtype = np.dtype(tf.as_dtype(spec.dtype).as_numpy_dtype)
        if np.issubdtype(dtype, np.floating):
            batch.append(rng.standard_normal(shape).astype(dtype))
        elif dtype == np.bool_:
            batch.append(rng.integers(0, 2, shape).astype(bool))
        else:
            batch.append(rng.integers(0, 2, shape).astype(dtype))
    return batch


def run_graph_def(
    graph_def: tf.compat.v1.GraphDef, signature: ModelSignature, inputs: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Run a frozen graph once in a fresh TF1 session, as a TF1 consumer would."""
    with GraphRunner(graph_def, signature) as runner:
        return runner.run(inputs)


FED_CONSTANT_BYTES = 1 << 20
"""Constants from this size on are fed to the session by `run_graph_file` instead of built in."""


def run_graph_file(
    path: str, signature: ModelSignature, inputs: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """Run a binary GraphDef file in a fresh TF1 session, holding its weights about twice.

    `import_graph_def` of the parsed file holds the weights four or five
    times (the file's bytes, the Python proto, its serialization, TensorFlow's
    graph and the session's copy of it). Here the file is read one top-level
    record at a time and each record is parsed by protobuf, as a loader would
    parse the whole; a `Const` of `FED_CONSTANT_BYTES` or more becomes a
    `Placeholder` of its dtype and shape, fed exactly the bytes its record
    holds. Everything else (every other node, the function library, the
    versions) is imported as written. The fed arrays are the weights once;
    TensorFlow copies a fed array that is not 64-byte aligned (these are
    not), hence about twice (1.8x measured).

    Raises:
        FreezeError: The file is not a sound GraphDef (a record does not
            parse, a node is nonsense, a constant's bytes do not fit its shape).
    """
    graph_def = tf.compat.v1.GraphDef()
    fed: dict[str, np.ndarray] = {}
    with tf.io.gfile.GFile(path, "rb") as file:
        for field, header, payload in read_fields(file):
            if field != 1:
                graph_def.MergeFromString(header + payload)
                continue
            node = tf.compat.v1.NodeDef.FromString(payload)
            del payload
            tensor = node.attr["value"].tensor if node.op == "Const" else None
            if tensor is not None and tensor.tensor_content:
                value = _constant_value(node, tensor)
                if value.nbytes >= FED_CONSTANT_BYTES:
                    fed[node.name + ":0"] = value
                    node = _placeholder_like(node, tensor)
                del value
            graph_def.node.append(node)
    problem = graph_def_problem(graph_def)
    if problem:
        raise FreezeError(f"{path} is not a GraphDef: {problem}")
    with GraphRunner(graph_def, signature, constants=fed) as runner:
        return runner.run(inputs)


def _constant_value(node: tf.compat.v1.NodeDef, tensor: Any) -> np.ndarray:
    """A large `Const`'s value from its record's bytes, checked as the `Const` kernel checks it."""
    dtype = tf.as_dtype(tensor.dtype)
    shape = [d.size for d in tensor.tensor_shape.dim]
    content = tensor.tensor_content
    if node.attr["dtype"].type != tensor.dtype or len(content) != int(np.prod(shape)) * dtype.size:
        raise FreezeError(
            f"Constant {node.name!r} holds {len(content):,} bytes of {dtype.name}, which do not "
            f"fill its shape {shape} (or its dtype attribute differs)."
        )
    return np.frombuffer(content, dtype.as_numpy_dtype).reshape(shape)


def _placeholder_like(node: tf.compat.v1.NodeDef, tensor: Any) -> tf.compat.v1.NodeDef:
    placeholder = tf.compat.v1.NodeDef(name=node.name, op="Placeholder", input=node.input)
    placeholder.attr["dtype"].type = tensor.dtype
    placeholder.attr["shape"].shape.CopyFrom(tensor.tensor_shape)
    return placeholder


def default_probe(signature: ModelSignature, batch_size: int) -> list[np.ndarray]:
    """`freeze.probe_inputs`, with the batch a graph fixes when it fixes one."""
    for spec in signature.inputs:
        if spec.shape is None:
            raise FreezeError(
                f"Input {spec.name!r} has an unknown shape, so no probe batch can be made. "
                "HINT: pass verification inputs (probe=...)."
            )
    fixed = {s.shape[0] for s in signature.inputs if s.shape and s.shape[0] is not None}
    batch_size = fixed.pop() if len(fixed) == 1 else batch_size
    batch = probe_inputs(signature, batch_size)
    # probe_inputs gives every input a batch dimension; a scalar input gets a scalar.
    return [x if spec.shape else x.reshape(-1)[0] for spec, x in zip(signature.inputs, batch)]


FLOAT32_TOLERANCE = 1e-5
"""The default largest difference for a graph computing in float32 (or an unknown precision)."""

HALF_PRECISION_EPSILON = {"float16": 2.0**-10, "bfloat16": 2.0**-7}
"""The gap between 1 and the next number of each half-precision type."""

HALF_PRECISION_STEPS = 8
"""How many epsilons (at the outputs' magnitude) a mixed-precision graph may differ by.

The frozen graph computes the same float16 / bfloat16 arithmetic as the
live model, but graph and eager kernels fuse and order it differently. On
small real models (MLP, CNN, LSTM/GRU, attention, residual; 2-3 seeds each,
256-row probes, with and without `optimize`) the largest difference seen was
1.55 epsilons for float16 and 0.93 for bfloat16, times max(1, largest
|output|); 8 leaves room for other kernels (GPUs) that were not measured.
"""


def default_tolerance(compute_dtype: str | None, expected: Sequence[np.ndarray]) -> float:
    """The verification tolerance for a model computing in `compute_dtype` (None: unknown).

    `FLOAT32_TOLERANCE`, except for float16 / bfloat16: `HALF_PRECISION_STEPS`
    epsilons of that type times the largest finite |value| of the reference
    outputs `expected` (at least 1), since half-precision rounding grows with
    the values.
    """
    epsilon = HALF_PRECISION_EPSILON.get(compute_dtype or "")
    if epsilon is None:
        return FLOAT32_TOLERANCE
    scale = 1.0
    for array in expected:
        values = np.abs(np.asarray(array, np.float64))
        scale = max(scale, float(np.max(values[np.isfinite(values)], initial=0.0)))
    return HALF_PRECISION_STEPS * epsilon * scale


def compare_outputs(
    signature: ModelSignature,
    expected: Sequence[np.ndarray],
    actual: Sequence[np.ndarray],
    tolerance: float,
) -> float:
    """The largest absolute difference between the outputs; raise above `tolerance`.

    A NaN (or an infinity of the same sign) in both at the same position counts
    as equal: a model may rightly give NaN for some inputs (a mean over a fully
    masked row), and the frozen graph must then give it too.

    Raises:
        VerificationError: Naming the output, the index of its worst element
            and both values there.
        FreezeError: An output has another shape than the reference's.
    """
    worst = 0.0
    for spec, want, got in zip(signature.outputs, expected, actual):
        want, got = np.asarray(want, np.float64), np.asarray(got, np.float64)
        if want.shape != got.shape:
            raise FreezeError(
                f"Frozen graph output {spec.name!r} has shape {list(got.shape)}, the live "
                f"model's {list(want.shape)}; nothing was published."
            )
        if not want.size:
            continue
        diff = _differences(want, got)
        index = np.unravel_index(np.argmax(diff), diff.shape)
        if not diff[index] <= tolerance:
            raise VerificationError(
                spec.name, float(diff[index]), tolerance,
                index=[int(i) for i in index], expected=float(want[index]), actual=float(got[index]),
            )
        worst = max(worst, float(diff[index]))
    return worst


def _differences(want: np.ndarray, got: np.ndarray) -> np.ndarray:
    """|want - got|: 0 where both hold the same non-finite value, inf where only one is NaN."""
    with np.errstate(invalid="ignore"):
        diff = np.abs(want - got)
    same = (np.isnan(want) & np.isnan(got)) | ((want == got) & ~np.isfinite(want))
    diff[same] = 0.0
    diff[np.isnan(diff)] = np.inf
    return diff
