"""Publishing a frozen graph: optimize, write under a temporary name, verify, rename, describe.

One path for every frozen graph the package writes (the train-end freeze,
`tfcheckpointer freeze` by either route, the TF1 hook's): nothing is left at
the output path unless verification passed, and a JSON sidecar
(`<output>.json`) says what the graph is, where it came from and how well it
matched.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from tfcheckpointer.checkpoint import naming
from tfcheckpointer.checkpoint.files import atomic_write
from tfcheckpointer.checkpoint.scores import checkpoint_score
from tfcheckpointer.checkpoint.storage import files_for
from tfcheckpointer.config.schema import FreezeConfig
from tfcheckpointer.errors import CheckpointError, FreezeError, first_line, tensorflow_error_line
from tfcheckpointer.graph.files import read_graph_def, write_streamed_graph
from tfcheckpointer.graph.nodes import PROTOBUF_LIMIT_BYTES, check_graph_size
from tfcheckpointer.graph.probe import ProbeLike, resolve_probe
from tfcheckpointer.graph.signature import ModelSignature
from tfcheckpointer.graph.stream import ProgressFactory, StreamedGraph
from tfcheckpointer.graph.verify import (
    compare_outputs,
    default_tolerance,
    run_graph_def,
    run_graph_file,
)

if TYPE_CHECKING:
    from tfcheckpointer.graph.optimize import OptimizeReport

logger = logging.getLogger("tfcheckpointer")


@dataclasses.dataclass(frozen=True)
class FrozenGraph:
    """A published frozen graph."""

    path: str
    sidecar: str
    sha256: str
    bytes: int
    node_count: int
    max_abs_diff: float | None
    optimized: OptimizeReport | None = None
    """What `freeze.optimize` removed; None when it is off."""


@dataclasses.dataclass(frozen=True)
class FrozenCheckpoint:
    """A published frozen graph and the checkpoint it was frozen from."""

    frozen: FrozenGraph
    checkpoint: str
    step: int | None



def publish_frozen_graph(
    graph: tf.compat.v1.GraphDef | StreamedGraph,
    config: FreezeConfig,
    signature: ModelSignature,
    *,
    reference: Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]],
    probe: ProbeLike = None,
    size_limit: int = PROTOBUF_LIMIT_BYTES,
    description: Mapping[str, Any] | None = None,
    compute_dtype: str | None = None,
    progress: ProgressFactory | None = None,
) -> FrozenGraph:
    """Publish `graph` at `config.output` as `freeze_model` does, verified and with a sidecar.

    `graph` is a GraphDef, or a `stream.StreamedGraph` whose constants are
    read one at a time while the file is written. Its size is checked
    against `size_limit` before anything is written. With `config.optimize`
    it is optimized first (`optimize.optimize_graph_def`), which needs the
    whole GraphDef in memory (`StreamedGraph.materialize`: about ten times the
    weights, as TensorFlow's converter). The file is written to a temporary
    name and run in a fresh TF1 session on the probe batch
    (`probe.resolve_probe`: `probe`, else a random batch): a binary file by
    `verify.run_graph_file`, which holds its weights about twice, a text file
    parsed whole. Its outputs must be within `config.verify_tolerance` of
    `reference(probe)`, or if that is None of the default for `compute_dtype`
    (`verify.default_tolerance`), the precision the model computes in (None:
    unknown, taken as float32). Only then is it renamed into place and
    `<output>.json` written, recording the tolerance used, the compute dtype
    and (`"probe"`) where the batch came from. `description` adds or sets
    sidecar keys (`step`, `checkpoint`, ...). `progress(total bytes)` gives
    what reports the bytes written (`progress.progress_bar`); the rate is
    logged either way.
    """
    # Resolved (and checked) first: a bad probe fails before any work.
    batch = resolve_probe(probe, signature, batch_size=config.verify_batch_size) if config.verify else None
    streamed = graph if isinstance(graph, StreamedGraph) else StreamedGraph(graph, {})
    report = None
    if config.optimize:
        graph_def, report = _optimize(streamed.materialize(), signature, size_limit=size_limit)
        streamed = StreamedGraph(graph_def, {})
    size = streamed.byte_size()
    if size >= size_limit:
        raise FreezeError(
            f"The frozen graph would be {size:,} bytes; it must stay under {size_limit:,} bytes "
            "(the 2 GiB protobuf limit); nothing was written. HINT: keep the Saver checkpoints "
            "(no size limit) and export a SavedModel for serving instead."
        )
    output = config.output
    as_text = output.endswith(".pbtxt")
    max_diff: float | None = None
    tolerance: float | None = None

    def verify(temp: str) -> None:
        # Failures here are the graph's or the reference's, never the write's: each is
        # a FreezeError of its own, which the write's error handling below lets through.
        nonlocal max_diff, tolerance
        assert batch is not None  # `verify` runs only with config.verify
        inputs = batch.data
        started = time.perf_counter()
        try:
            if as_text:
                actual = run_graph_def(read_graph_def(temp, as_text=True), signature, inputs)
            else:
                actual = run_graph_file(temp, signature, inputs)
        except (tf.errors.OpError, CheckpointError, ValueError) as error:
            raise FreezeError(
                f"The frozen graph does not run in a TF1 session: {tensorflow_error_line(error)}; "
                "nothing was published."
            ) from None
        try:
            expected = reference(inputs)
        except tf.errors.OpError as error:
            raise FreezeError(
                f"The model to verify against does not run on the probe batch: "
                f"{tensorflow_error_line(error)}; nothing was published."
            ) from None
        tolerance = config.verify_tolerance
        if tolerance is None:
            tolerance = default_tolerance(compute_dtype, expected)
        max_diff = compare_outputs(signature, expected, actual, tolerance)
        logger.info("Verified frozen graph seconds=%.2f max_abs_diff=%g",
                    time.perf_counter() - started, max_diff)

    started = time.perf_counter()
    try:
        files_for(output).makedirs(os.path.dirname(output) or ".")
        sha256, written = write_streamed_graph(
            streamed, output, check=verify if config.verify else None,
            progress=progress(size) if progress else None,
        )
    except (OSError, tf.errors.OpError) as error:
        raise FreezeError(f"Cannot write {output}: {first_line(error)}") from None
    seconds = time.perf_counter() - started
    logger.info(
        "Wrote frozen graph path=%s bytes=%d seconds=%.2f rate=%.1f MB/s (verification included)",
        output, written, seconds, written / 1e6 / max(seconds, 1e-9),
    )
    sidecar = output + naming.SIDECAR_SUFFIX
    content = {
        "format": "frozen GraphDef (text)" if as_text else "frozen GraphDef",
        "inputs": [t.as_dict() for t in signature.inputs],
        "outputs": [t.as_dict() for t in signature.outputs],
        "step": None,
        "checkpoint": None,
        "sha256": sha256,
        "bytes": written,
        "node_count": streamed.node_count,
        "optimized": report.as_dict() if report else None,
        "verified": config.verify,
        "max_abs_diff": max_diff,
        "probe": batch.origin if batch else None,
        "verify_tolerance": tolerance,
        "compute_dtype": compute_dtype,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow_version": tf.__version__,
        "keras_version": _keras_version(),
        **(description or {}),
    }
    # The epoch-end metrics recorded for the checkpoint (`checkpoint.keep_best`), if any.
    content["score"] = checkpoint_score(content["checkpoint"]) if content["checkpoint"] else None
    atomic_write(sidecar, (json.dumps(content, indent=2) + "\n").encode())
    return FrozenGraph(output, sidecar, sha256, written, streamed.node_count, max_diff, report)


def _optimize(
    graph_def: tf.compat.v1.GraphDef, signature: ModelSignature, *, size_limit: int
) -> tuple[tf.compat.v1.GraphDef, OptimizeReport]:
    """`optimize.optimize_graph_def`, logged and size-checked again (folding can grow constants)."""
    # Imported here: Grappler is loaded only by the jobs that ask for it.
    from tfcheckpointer.graph.optimize import optimize_graph_def

    graph_def, report = optimize_graph_def(graph_def, signature)
    check_graph_size(graph_def, size_limit)
    logger.info(
        "Optimized frozen graph nodes=%d->%d bytes=%d->%d",
        report.nodes_before, report.nodes_after, report.bytes_before, report.bytes_after,
    )
    return graph_def, report


def _keras_version() -> str | None:
    """The Keras version, without importing Keras: the loaded one's, else the installed one's."""
    loaded = sys.modules.get("keras")
    if loaded is not None and getattr(loaded, "__version__", None):
        return loaded.__version__
    try:
        return importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        return None
