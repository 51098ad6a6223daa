"""The inputs and outputs of a graph: node names, dtypes and shapes, and their proto forms."""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2


INPUTS_COLLECTION = "inputs"
OUTPUTS_COLLECTION = "outputs"
"""Graph collections holding the input placeholders and output tensors, in signature order."""

SERVING_SIGNATURE_KEY = "serving_default"
PREDICT_METHOD_NAME = "tensorflow/serving/predict"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: node name, dtype name and shape (None = any size)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None

    @property
    def tensor(self) -> str:
        return f"{self.name}:0"

    def as_proto(self) -> meta_graph_pb2.TensorInfo:
        """The `TensorInfo` proto a signature or a Grappler feed holds."""
        return meta_graph_pb2.TensorInfo(
            name=self.tensor,
            dtype=tf.as_dtype(self.dtype).as_datatype_enum,
            tensor_shape=tf.TensorShape(self.shape).as_proto(),
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form the sidecar and `inspect` use."""
        shape = None if self.shape is None else list(self.shape)
        return {"name": self.name, "tensor": self.tensor, "dtype": self.dtype, "shape": shape}

    @classmethod
    def from_dict(cls, described: dict[str, Any]) -> TensorInfo:
        """The inverse of `as_dict`: a sidecar's or manifest's `inputs` / `outputs` entry."""
        shape = described["shape"]
        return cls(described["name"], described["dtype"], None if shape is None else tuple(shape))


@dataclasses.dataclass(frozen=True)
class ModelSignature:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @classmethod
    def from_dict(cls, described: dict[str, Any]) -> ModelSignature:
        """From a sidecar's or manifest's `{"inputs": [...], "outputs": [...]}`."""
        return cls(
            tuple(TensorInfo.from_dict(t) for t in described["inputs"]),
            tuple(TensorInfo.from_dict(t) for t in described["outputs"]),
        )

    @property
    def names(self) -> list[str]:
        """Every input and output node name, inputs first."""
        return [t.name for t in self.inputs + self.outputs]
