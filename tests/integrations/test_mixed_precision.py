"""Mixed precision end to end: train in one process, resume in another, freeze with float32 I/O."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import tensorflow as tf

from tests.helpers.train_child import build_model, dataset
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.graph.keras_freeze import live_outputs, model_signature
from tfcheckpointer.graph.verify import default_probe, default_tolerance

ROOT = Path(__file__).resolve().parents[2]
CHILD = str(ROOT / "tests" / "helpers" / "train_child.py")
LOSS_SCALE_GROWTH = 2
"""The child's loss scale doubles every 2 finite steps, so it moves within the run."""


POLICIES = ("mixed_float16", "mixed_bfloat16")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, tuple[Path, int, float | None]]:
    """`{policy: (checkpoint directory, last step, loss scale)}` of a child trained under each.

    The children train 6 batches each, both at once: most of their time is
    importing TensorFlow.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    args = ["--every", "3", "--epochs", "3", "--rows", "16", "--batch", "8"]
    children = {}
    for policy in POLICIES:
        directory = tmp_path_factory.mktemp(policy) / "ckpt"
        growth = ["--loss-scale-growth", str(LOSS_SCALE_GROWTH)] if policy == "mixed_float16" else []
        children[policy] = directory, subprocess.Popen(
            [sys.executable, "-u", CHILD, str(directory), "--policy", policy, *args, *growth],
            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
    results = {}
    for policy, (directory, child) in children.items():
        output = child.communicate(timeout=300)[0]
        assert child.returncode == 0 and "done" in output, output
        step = int(re.findall(r"^step (\d+)$", output, re.M)[-1])
        scale = re.search(r"^loss scale (\S+)$", output, re.M)
        results[policy] = directory, step, float(scale.group(1)) if scale else None
    return results


class RecordAtTrainBegin(keras.callbacks.Callback):
    """What the checkpoint callback (listed before this one) restored, before any step runs."""

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        self.step = int(optimizer.iterations.numpy())
        scale = getattr(optimizer, "dynamic_scale", None)
        self.scale = None if scale is None else float(scale.numpy())


@pytest.mark.parametrize("policy", POLICIES, indirect=True)
def test_trains_resumes_in_a_new_process_and_freezes_with_float32_io(tmp_path, trained, policy):
    directory, step, scale = trained[policy]
    if policy == "mixed_float16":
        assert scale not in (None, 2.0**15)  # it moved from Keras's initial scale

    model = build_model(LOSS_SCALE_GROWTH if policy == "mixed_float16" else None)
    output = tmp_path / "frozen.pb"
    callback = CheckpointCallback(
        directory=str(directory), every_n_steps=3, freeze={"output": str(output)}
    )
    record = RecordAtTrainBegin()
    x, y = dataset(16)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[callback, record])

    assert (record.step, record.scale) == (step, scale)  # the step and the loss scale came back
    sidecar = json.loads((tmp_path / "frozen.pb.json").read_text())
    assert [t["dtype"] for t in sidecar["inputs"] + sidecar["outputs"]] == ["float32", "float32"]
    assert sidecar["compute_dtype"] == model.compute_dtype
    probe = default_probe(model_signature(model), 4)  # the probe the freeze verified on
    tolerance = default_tolerance(model.compute_dtype, live_outputs(model, probe))
    assert sidecar["verify_tolerance"] == tolerance > 1e-5
    assert sidecar["max_abs_diff"] <= tolerance
    # A TF1 consumer of the .meta feeds and fetches float32, as of the frozen graph.
    meta = tf.compat.v1.MetaGraphDef()
    meta.ParseFromString(Path(sidecar["checkpoint"] + ".meta").read_bytes())
    serving = meta.signature_def["serving_default"]
    assert {t.dtype for t in [*serving.inputs.values(), *serving.outputs.values()]} == {
        tf.float32.as_datatype_enum
    }
    (name,) = serving.outputs
    (node,) = [n for n in meta.graph_def.node if n.name == name]
    assert node.attr["T"].type == tf.float32.as_datatype_enum
