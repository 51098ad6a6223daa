"""Running a frozen graph as a TF1 consumer would: imported once into a session, fed batch after batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfcheckpointer.graph.signature import ModelSignature


class GraphRunner:
    """A frozen GraphDef in its own TF1 graph and session; use it as a context manager.

    Example:

    ```python
    with GraphRunner(read_graph_def("model.pb"), signature) as runner:
        outputs = [runner.run(batch) for batch in batches]
    ```
    """

    def __init__(
        self,
        graph_def: tf.compat.v1.GraphDef,
        signature: ModelSignature,
        *,
        constants: Mapping[str, np.ndarray] | None = None,
    ):
        """`constants`: tensors fed with every run beside the inputs (a verified
        file's large constants, which `verify.run_graph_file` feeds as placeholders)."""
        self.signature = signature
        self._constants = dict(constants or {})
        graph = tf.Graph()
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        self._session = tf.compat.v1.Session(graph=graph)
        self._fetches = [o.tensor for o in signature.outputs]

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The outputs, in signature order, for one array per input, in signature order."""
        feeds = {i.tensor: x for i, x in zip(self.signature.inputs, inputs)}
        return self._session.run(self._fetches, {**self._constants, **feeds})

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> GraphRunner:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
