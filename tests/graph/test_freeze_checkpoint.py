"""`tfcheckpointer freeze`: checkpoints frozen after training, by the TF1 and the Keras route."""

from __future__ import annotations

import hashlib
import json
import shutil
import types
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import mlp, run_in_tf1_session
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.checkpoint import keys, naming
from tfcheckpointer.checkpoint.variables import make_saver
from tfcheckpointer.cli import main
from tfcheckpointer.config import FreezeConfig, load_config
from tfcheckpointer.errors import CheckpointError, VerificationError
from tfcheckpointer.graph.keras_checkpoint import (
    freeze_from_config,
    freeze_keras_checkpoint,
    load_keras_model,
)
from tfcheckpointer.graph.keras_freeze import freeze_graph_def, model_signature
from tfcheckpointer.graph.locate import resolve_checkpoint
from tfcheckpointer.graph.publish import publish_frozen_graph
from tfcheckpointer.graph.session_freeze import freeze_meta_graph
from tfcheckpointer.graph.files import read_meta_graph_def

PROBE = np.random.default_rng(7).standard_normal((5, 4)).astype("float32")


def other_model() -> keras.Model:
    """Another architecture: `dense` of another shape, no batch norm, a `head` mlp lacks."""
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1, name="head")]
    )
    model.compile("adam", "mse")
    return model


def train(build, directory: Path, data) -> keras.Model:
    model = build()
    callback = CheckpointCallback(directory=str(directory), every_n_steps=2, freeze=None)
    model.fit(*data, batch_size=16, epochs=2, callbacks=[callback], verbose=0)
    return model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One trained mlp (checkpoints at steps 2, 4, 6, 8 with `.meta`s) and another model's run."""
    tmp = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype("float32")
    data = (x, (x.sum(axis=1, keepdims=True) > 0).astype("float32"))
    model = train(mlp, tmp / "ckpt", data)
    train(other_model, tmp / "other", data)
    model.save(tmp / "model.keras")
    return types.SimpleNamespace(
        directory=tmp / "ckpt",
        meta=str(tmp / "ckpt" / "model.ckpt-8.meta"),
        other=tmp / "other",
        keras_file=str(tmp / "model.keras"),
        expected=model(PROBE, training=False).numpy(),
    )


def job_file(tmp_path: Path, directory: Path) -> Path:
    """A job file (JSON is YAML) whose model factory builds the trained architecture."""
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps({
        "checkpoint": {"directory": str(directory), "every_n_steps": 2},
        "model": {"factory": "tests.helpers:mlp"},
        "freeze": {"output": str(tmp_path / "frozen.pb"), "input_names": ["inputs/X"],
                   "output_names": ["output/predict"]},
    }))
    return path



def test_latest_ignores_another_savers_entry_in_the_state_file(run, tmp_path, capsys):
    copy = tmp_path / "ckpt"
    shutil.copytree(run.directory, copy)
    with tf.Graph().as_default():  # another TF1 program saves into the same directory
        other = tf.compat.v1.get_variable("other", [1])
        with tf.compat.v1.Session() as session:
            session.run(other.initializer)
            tf.compat.v1.train.Saver([other]).save(session, str(copy / "best"), global_step=99)
    assert tf.train.latest_checkpoint(str(copy)) == str(copy / "best-99")
    assert main(["freeze", str(job_file(tmp_path, copy)), "--checkpoint", "latest"]) == 0, capsys.readouterr().err
    assert sidecar(tmp_path / "frozen.pb")["checkpoint"] == str(copy / "model.ckpt-8")

def sidecar(path: Path) -> dict:
    return json.loads(Path(f"{path}.json").read_text())


def assert_nothing_written(tmp_path: Path, output: Path) -> None:
    assert not output.exists() and not Path(f"{output}.json").exists()
    assert not [p for p in tmp_path.rglob("*") if naming.TEMP_INFIX in p.name]


# --- The TF1 route ----------------------------------------------------------------------


def test_meta_route_freezes_the_latest_checkpoint_equal_to_the_trained_model(run, tmp_path, capsys):
    output = tmp_path / "frozen.pb"
    assert main(["freeze", "--meta", run.meta, "--output", str(output)]) == 0
    prefix = str(run.directory / "model.ckpt-8")
    assert capsys.readouterr().out.startswith(f"Froze {prefix} (step 8) into {output} (")
    # Names default to the .meta's `inputs` / `outputs` collections.
    (got,) = run_in_tf1_session(output, {"features": PROBE}, ["dense_1"])
    np.testing.assert_allclose(got, run.expected, rtol=0, atol=1e-6)
    described = sidecar(output)
    assert (described["step"], described["checkpoint"]) == (8, prefix)
    assert described["meta_graph"] == run.meta
    assert described["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert described["verified"] is True and described["max_abs_diff"] == 0.0
    assert [i["tensor"] for i in described["inputs"]] == ["features:0"]
    assert described["outputs"] == [
        {"name": "dense_1", "tensor": "dense_1:0", "dtype": "float32", "shape": [None, 1]}
    ]


def test_both_routes_freeze_an_older_checkpoint_alike(run, tmp_path):
    prefix = str(run.directory / "model.ckpt-4")
    tf1 = freeze_meta_graph(
        run.meta, FreezeConfig(output=str(tmp_path / "tf1.pbtxt"), output_names=("dense_1",)),
        checkpoint=prefix,
    )
    config = FreezeConfig(output=str(tmp_path / "keras.pb"), output_names=("dense_1",))
    from_keras = freeze_keras_checkpoint(load_keras_model(run.keras_file), prefix, config)
    assert (tf1.step, tf1.checkpoint) == (from_keras.step, from_keras.checkpoint) == (4, prefix)
    assert (tmp_path / "tf1.pbtxt").read_text().startswith("node {")
    (a,) = run_in_tf1_session(tmp_path / "tf1.pbtxt", {"features": PROBE}, ["dense_1"])
    (b,) = run_in_tf1_session(tmp_path / "keras.pb", {"features": PROBE}, ["dense_1"])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert np.abs(a - run.expected).max() > 1e-4  # step 4, not the trained weights


def test_meta_route_restores_a_checkpoint_without_optimizer_state(run, tmp_path):
    model = load_keras_model(run.keras_file)
    freeze_keras_checkpoint(model, str(run.directory), FreezeConfig(output=str(tmp_path / "k.pb")))
    weights_only = str(tmp_path / "weights.ckpt-8")
    variables = keys.checkpoint_variables(model, include_optimizer=False)
    make_saver(variables).save(None, weights_only, write_meta_graph=False, write_state=False)
    assert not [k for k, _ in tf.train.list_variables(weights_only) if k.startswith("optimizer/")]
    # The .meta's Saver also restores Adam's slots; the outputs do not need them.
    frozen = freeze_meta_graph(
        run.meta, FreezeConfig(output=str(tmp_path / "f.pb")), checkpoint=weights_only
    )
    assert frozen.frozen.max_abs_diff == 0.0
    (got,) = run_in_tf1_session(tmp_path / "f.pb", {"features": PROBE}, ["dense_1"])
    np.testing.assert_allclose(got, run.expected, rtol=0, atol=1e-6)


def test_names_may_be_repeated_or_comma_separated(run, tmp_path, capsys):
    relu = next(n.name for n in read_meta_graph_def(run.meta)[0].graph_def.node if n.op == "Relu")
    output = tmp_path / "frozen.pb"
    argv = ["freeze", "--meta", run.meta, "-o", str(output), "--input-names", "features:0",
            "--output-names", f"dense_1,{relu}"]
    assert main(argv) == 0, capsys.readouterr().err
    assert [o["name"] for o in sidecar(output)["outputs"]] == ["dense_1", relu]


# --- The Keras route --------------------------------------------------------------------


def test_config_route_freezes_the_latest_checkpoint_equal_to_the_trained_model(
    run, tmp_path, capsys
):
    config = job_file(tmp_path, run.directory)
    assert main(["freeze", str(config)]) == 0
    output = tmp_path / "frozen.pb"
    prefix = str(run.directory / "model.ckpt-8")
    assert capsys.readouterr().out.startswith(f"Froze {prefix} (step 8) into {output} (")
    (got,) = run_in_tf1_session(output, {"inputs/X": PROBE}, ["output/predict"])
    np.testing.assert_allclose(got, run.expected, rtol=0, atol=1e-6)
    described = sidecar(output)
    assert (described["step"], described["checkpoint"]) == (8, prefix)
    assert described["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert described["verified"] is True and described["max_abs_diff"] == 0.0


def test_config_route_takes_overrides_and_another_checkpoint(run, tmp_path, capsys):
    config = job_file(tmp_path, run.directory)
    output = tmp_path / "other.pbtxt"
    argv = ["freeze", str(config), "--checkpoint", str(run.directory / "model.ckpt-2.index"),
            "--set", f"freeze.output={output}", "--verify-tolerance", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    assert not (tmp_path / "frozen.pb").exists()
    assert sidecar(output)["step"] == 2


def test_keras_file_route_through_the_command_line(run, tmp_path, capsys):
    output = tmp_path / "frozen.pb"
    argv = ["freeze", "--model", run.keras_file, "--checkpoint", str(run.directory),
            "--output", str(output), "--output-names", "output/predict"]
    assert main(argv) == 0, capsys.readouterr().err
    (got,) = run_in_tf1_session(output, {"features": PROBE}, ["output/predict"])
    np.testing.assert_allclose(got, run.expected, rtol=0, atol=1e-6)
    assert sidecar(output)["step"] == 8


def test_freeze_from_config_returns_what_it_published(run, tmp_path):
    job = load_config(job_file(tmp_path, run.directory))
    done = freeze_from_config(job, checkpoint="latest")
    assert done.frozen.path == str(tmp_path / "frozen.pb")
    assert (done.step, done.checkpoint) == (8, str(run.directory / "model.ckpt-8"))


# --- Naming a checkpoint ----------------------------------------------------------------


@pytest.mark.parametrize(
    "given, expected",
    [
        ("latest", "model.ckpt-8"),
        ("{dir}", "model.ckpt-8"),
        ("{dir}/model.ckpt-4", "model.ckpt-4"),
        ("{dir}/model.ckpt-4.index", "model.ckpt-4"),
    ],
)
def test_checkpoint_is_latest_a_directory_or_a_prefix(run, given, expected):
    resolved = resolve_checkpoint(given.format(dir=run.directory), directory=str(run.directory))
    assert resolved == str(run.directory / expected)


def test_without_a_state_file_the_highest_step_is_latest(run, tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(run.directory, copy)
    (copy / naming.STATE_FILENAME).unlink()
    (copy / "other.ckpt-100.index").write_bytes(b"")
    assert resolve_checkpoint("latest", directory=str(copy), basename="model.ckpt") == str(
        copy / "model.ckpt-8"
    )


# --- Bad input: exit code 2, one clear line, nothing at the output path --------------------


def freeze_fails(argv: list[str], tmp_path: Path, capsys, output: Path) -> str:
    assert main(["freeze", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfcheckpointer: error: ") and "Traceback" not in err
    assert_nothing_written(tmp_path, output)
    return err


def test_a_missing_checkpoint(run, tmp_path, capsys):
    output = tmp_path / "f.pb"
    missing = str(tmp_path / "model.ckpt-5")
    argv = ["--meta", run.meta, "--checkpoint", missing, "-o", str(output)]
    err = freeze_fails(argv, tmp_path, capsys, output)
    assert f"No checkpoint at {missing} ({missing}.index does not exist)" in err


def test_a_directory_without_checkpoints(run, tmp_path, capsys):
    output = tmp_path / "f.pb"
    (tmp_path / "empty").mkdir()
    argv = ["--model", run.keras_file, "--checkpoint", str(tmp_path / "empty"), "-o", str(output)]
    err = freeze_fails(argv, tmp_path, capsys, output)
    assert f"No checkpoint in directory {tmp_path / 'empty'}: no `checkpoint` state file" in err


def test_a_checkpoint_of_another_model(run, tmp_path, capsys):
    output = tmp_path / "frozen.pb"
    config = job_file(tmp_path, run.directory)
    err = freeze_fails([str(config), "--checkpoint", str(run.other)], tmp_path, capsys, output)
    assert f"Checkpoint {run.other}/model.ckpt-8 does not match the model." in err
    assert "Missing from the checkpoint: batch_normalization/beta, " in err
    assert "Not in the model: head/bias, head/kernel" in err
    assert "Shape of dense/kernel: model [4, 8], checkpoint [4, 3]" in err
    assert "HINT: give a checkpoint written while training this model." in err


def test_a_meta_graph_of_another_model_than_the_checkpoint(run, tmp_path, capsys):
    output = tmp_path / "f.pb"
    argv = ["--meta", str(run.other / "model.ckpt-8.meta"), "--checkpoint", str(run.directory),
            "-o", str(output)]
    err = freeze_fails(argv, tmp_path, capsys, output)
    assert f"Checkpoint {run.directory}/model.ckpt-8 does not match the model." in err
    assert "Missing from the checkpoint: head/bias, head/kernel" in err
    assert "Shape of dense/kernel: model [4, 3], checkpoint [4, 8]" in err
    assert f"HINT: give the checkpoint that {run.other}/model.ckpt-8.meta was written with" in err


def test_output_names_not_in_the_graph_list_the_closest(run, tmp_path, capsys):
    output = tmp_path / "f.pb"
    argv = ["--meta", run.meta, "-o", str(output), "--output-names", "dense_l"]
    err = freeze_fails(argv, tmp_path, capsys, output)
    assert f"Output name 'dense_l' is not a node of {run.meta}. Closest: 'dense_1'," in err
    assert "Its declared outputs: 'dense_1'." in err


@pytest.mark.parametrize(
    "content, problem",
    [
        (lambda meta: meta[: len(meta) // 2], "a truncated file, or not a protocol buffer"),
        (lambda meta: b"\xff" * 64, "a truncated file, or not a protocol buffer"),
        (lambda meta: b"just some text\n", "is not a MetaGraphDef"),
    ],
    ids=["truncated", "random-bytes", "text"],
)
def test_a_meta_graph_that_is_not_one(run, tmp_path, capsys, content, problem):
    bad = tmp_path / "model.ckpt-8.meta"
    bad.write_bytes(content(Path(run.meta).read_bytes()))
    output = tmp_path / "f.pb"
    argv = ["--meta", str(bad), "--checkpoint", str(run.directory), "-o", str(output)]
    err = freeze_fails(argv, tmp_path, capsys, output)
    assert f"{bad} is not a MetaGraphDef: " in err and problem in err


def test_a_frozen_graph_given_as_the_checkpoint(run, tmp_path, capsys):
    frozen = tmp_path / "frozen.pb"
    assert main(["freeze", "--meta", run.meta, "-o", str(frozen)]) == 0
    output = tmp_path / "again.pb"
    argv = ["--model", run.keras_file, "--checkpoint", str(frozen), "-o", str(output)]
    err = freeze_fails(argv, tmp_path, capsys, output)
    assert f"{frozen} is a frozen GraphDef, not a checkpoint. HINT: give a checkpoint prefix" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "<command line>: give one of CONFIG, --model MODEL.keras, --meta PREFIX.meta and "
             "--graph GRAPH.pbtxt"),
        (["--meta", "m.meta"], "<command line>: freeze.output: no output path"),
        (["--meta", "m.meta", "-o", "f.onnx"], "freeze.output: expected a path ending in .pb"),
        (["--model", "m.keras", "--set", "a=1"], "--set overrides keys of CONFIG; there is none"),
        (["--meta", "m.meta", "--import", "my_layers"],
         "--meta and --graph freeze without a Keras model"),
    ],
    ids=["no-source", "no-output", "bad-output", "set-without-config", "import-with-meta"],
)
def test_bad_arguments(argv, message, capsys):
    assert main(["freeze", *argv]) == 2
    assert message in capsys.readouterr().err


def test_an_existing_output_survives_a_failed_freeze(run, tmp_path, capsys):
    output = tmp_path / "frozen.pb"
    output.write_bytes(b"previous")
    argv = ["--meta", run.meta, "-o", str(output), "--checkpoint", str(run.other)]
    assert main(["freeze", *argv]) == 2
    assert output.read_bytes() == b"previous"


def test_a_verification_mismatch_publishes_nothing(tmp_path):
    model = mlp()
    signature = model_signature(model)
    graph_def = freeze_graph_def(model, signature)
    output = tmp_path / "f.pb"
    with pytest.raises(VerificationError, match=r"'dense_1' differs .* 1 \(tolerance 1e-05\)"):
        publish_frozen_graph(
            graph_def, FreezeConfig(output=str(output)), signature,
            reference=lambda probe: [model(probe[0], training=False).numpy() + 1.0],
        )
    assert_nothing_written(tmp_path, output)


def test_a_data_shard_is_not_a_checkpoint(run):
    shard = str(run.directory / "model.ckpt-8.data-00000-of-00001")
    hint = r"one data shard of a checkpoint.* HINT: give the checkpoint prefix .*model\.ckpt-8\."
    with pytest.raises(CheckpointError, match=hint):
        resolve_checkpoint(shard)
