"""The command line and the example job, run as a user runs them."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfcheckpointer.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "*.yaml")))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tfcheckpointer", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=600,
    )


def run_installed_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Runs the CLI as pip's `tfcheckpointer` script does: the current directory is not on sys.path.

    (`python -m` puts it there, so `run_cli` cannot show what the script does.)
    """
    script = cwd.parent / f"{cwd.name}-bin" / "tfcheckpointer"
    script.parent.mkdir(exist_ok=True)
    script.write_text("import sys\nfrom tfcheckpointer.cli import main\nsys.exit(main())\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=600,
    )


def test_there_are_example_configs():
    assert CONFIGS


@pytest.mark.parametrize("config", CONFIGS, ids=os.path.basename)
def test_every_shipped_config_validates(config, capsys):
    assert main(["validate", config]) == 0
    assert capsys.readouterr().out.startswith(f"{config}: OK: checkpoints every")


def test_validate_does_not_import_tensorflow():
    code = (
        "import sys\nfrom tfcheckpointer.cli import main\n"
        f"assert main(['validate', {CONFIGS[0]!r}]) == 0\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_bad_config_is_one_line_on_stderr_and_exit_2(tmp_path, capsys):
    (tmp_path / "job.yaml").write_text("checkpoint:\n  directory: x\n  every_n_steps: 0\n")
    assert main(["validate", str(tmp_path / "job.yaml")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"tfcheckpointer: error: {tmp_path}/job.yaml:3: checkpoint.every_n_steps: "
        "expected an integer >= 1, got 0\n"
    )


def test_overrides_are_validated_too(tmp_path, capsys):
    assert main(["validate", CONFIGS[0], "--set", "checkpoint.max_to_keep=-1"]) == 2
    assert "checkpoint.max_to_keep: expected an integer >= 1, got -1" in capsys.readouterr().err


def test_validate_refuses_a_misspelt_restore_mode(tmp_path):
    (tmp_path / "job.yaml").write_text(
        "checkpoint:\n  directory: ckpt\n  every_n_steps: 1\n  restore: lastest\n"
    )
    result = run_cli("validate", "job.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "tfcheckpointer: error: job.yaml:4: checkpoint.restore: 'lastest' is neither a restore "
        "mode ('latest', 'none') nor an existing checkpoint or directory "
        "HINT: did you mean 'latest'?\n"
    )


def test_validate_names_a_missing_factory(tmp_path, capsys):
    (tmp_path / "job.yaml").write_text(
        "checkpoint: {directory: x, every_n_steps: 1}\nmodel: {factory: 'a.b:c'}\n"
    )
    assert main(["validate", str(tmp_path / "job.yaml")]) == 2
    assert "data.factory: data.factory is required to train" in capsys.readouterr().err


def test_train_reports_an_unimportable_factory(tmp_path):
    (tmp_path / "job.yaml").write_text(
        "checkpoint: {directory: ckpt, every_n_steps: 1}\n"
        "model: {factory: 'no_such_module.models:build'}\n"
        "data: {factory: 'tfcheckpointer.examples.digits:load_data'}\n"
    )
    result = run_cli("train", "job.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        "job.yaml: model.factory: cannot import module 'no_such_module.models': no module "
        f"'no_such_module' in the current directory ({tmp_path}) or on sys.path" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ckpt").exists()


MY_FACTORIES = """\
import keras
import numpy as np


def build():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


def load():
    x = np.ones((16, 3), "float32")
    return x, x[:, :1]
"""


def test_the_installed_script_finds_factories_in_the_current_directory(tmp_path):
    (tmp_path / "my_factories.py").write_text(MY_FACTORIES)
    (tmp_path / "job.yaml").write_text(
        "checkpoint: {directory: ckpt, every_n_steps: 1, save_meta_graph: false, "
        "save_graph_def: false}\n"
        "model: {factory: 'my_factories:build'}\n"
        "data: {factory: 'my_factories:load'}\n"
        "fit: {epochs: 1, batch_size: 8}\n"
    )
    result = run_installed_cli("train", "job.yaml", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Trained to step 2; latest checkpoint ckpt/model.ckpt-2" in result.stdout


MY_LAYERS = """\
import keras


@keras.saving.register_keras_serializable(package="MyLayers")
class Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

    def call(self, inputs):
        return inputs * self.scale
"""
# Saves the model before training, so only the checkpoint holds the trained weights.
TRAIN_WITH_MY_LAYERS = """\
import keras
import numpy as np

import my_layers
from tfcheckpointer import CheckpointCallback

keras.utils.set_random_seed(0)
features = keras.Input((3,), name="features")
predict = keras.layers.Dense(1, name="predict")(my_layers.Scale(name="scale")(features))
model = keras.Model(features, predict)
model.compile("sgd", "mse")
model.save("model.keras")
x = np.random.default_rng(0).standard_normal((16, 3)).astype("float32")
callback = CheckpointCallback(
    "ckpt", every_n_steps=2, freeze=None, save_meta_graph=False, save_graph_def=False
)
model.fit(x, x[:, :1], batch_size=8, epochs=1, verbose=0, callbacks=[callback])
np.save("probe.npy", x[:4])
np.save("expected.npy", model(x[:4], training=False).numpy())
"""


@pytest.fixture(scope="module")
def custom_layer_run(tmp_path_factory) -> Path:
    """A directory with my_layers.py, model.keras of a model using its layer, and a checkpoint."""
    directory = tmp_path_factory.mktemp("custom")
    (directory / "my_layers.py").write_text(MY_LAYERS)
    (directory / "train.py").write_text(TRAIN_WITH_MY_LAYERS)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    trained = subprocess.run(
        [sys.executable, "train.py"], cwd=directory, env=env, capture_output=True, text=True
    )
    assert trained.returncode == 0, trained.stderr
    return directory


def test_freeze_imports_the_modules_that_register_custom_layers(custom_layer_run):
    from tests.helpers import run_in_tf1_session

    result = run_installed_cli(
        "freeze", "--model", "model.keras", "--checkpoint", "ckpt", "--output", "frozen.pb",
        "--import", "my_layers", cwd=custom_layer_run,
    )
    assert result.returncode == 0, result.stderr
    assert "Froze ckpt/model.ckpt-2 (step 2)" in result.stdout
    probe = np.load(custom_layer_run / "probe.npy")
    (got,) = run_in_tf1_session(custom_layer_run / "frozen.pb", {"features": probe}, ["predict"])
    np.testing.assert_allclose(got, np.load(custom_layer_run / "expected.npy"), rtol=0, atol=1e-6)


def test_freeze_without_import_names_the_unknown_layer_and_the_module(custom_layer_run):
    result = run_installed_cli(
        "freeze", "--model", "model.keras", "--checkpoint", "ckpt", "--output", "unused.pb",
        cwd=custom_layer_run,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "tfcheckpointer: error: Cannot load a Keras model from model.keras: it uses the custom "
        "class 'Scale', which no imported module has registered. HINT: pass --import my_layers "
        "(the module that defined it when the model was saved); its "
        "@keras.saving.register_keras_serializable() classes are then found.\n"
    )
    assert not (custom_layer_run / "unused.pb").exists()


@pytest.mark.slow
def test_example_job_trains_checkpoints_freezes_and_resumes(tmp_path):
    import tensorflow as tf

    from tfcheckpointer import CheckpointCallback
    from tfcheckpointer.examples.digits import build_model, load_data
    from tfcheckpointer.graph.files import read_graph_def

    config = str(ROOT / "configs" / "digits.yaml")
    first = run_cli("train", config, "--quiet", "--set", "fit.epochs=1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    checkpoints = tmp_path / "runs" / "digits" / "checkpoints"
    steps_per_epoch = -(-int(1797 * 0.8) // 32)
    assert tf.train.latest_checkpoint(str(checkpoints)) == str(checkpoints / f"model.ckpt-{steps_per_epoch}")
    assert f"Trained to step {steps_per_epoch}" in first.stdout

    # The frozen graph, run by plain TF1 code, equals the trained model (restored from its checkpoint).
    model = build_model()
    restore = CheckpointCallback(directory=str(checkpoints), every_n_steps=50, lock=False)
    restore.set_model(model)
    restore.on_train_begin()
    images = load_data()["validation_data"][0][:16]
    with tf.Graph().as_default() as graph:
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1])
        (predict,) = tf.compat.v1.import_graph_def(
            read_graph_def(str(tmp_path / "runs" / "digits" / "frozen.pb")),
            input_map={"inputs/X:0": x}, return_elements=["output/predict:0"], name="",
        )
    with tf.compat.v1.Session(graph=graph) as session:
        frozen = session.run(predict, {x: images})
    np.testing.assert_allclose(frozen, model(images, training=False).numpy(), atol=1e-6)

    second = run_cli("train", config, "--quiet", "--set", "fit.epochs=1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (
        f"Restored checkpoint step={steps_per_epoch} path=runs/digits/checkpoints/model.ckpt-{steps_per_epoch}"
        in second.stderr
    )
    assert f"Trained to step {2 * steps_per_epoch}" in second.stdout


def _masked_job(tmp_path, **freeze) -> Path:
    import yaml

    job = {
        "model": {"factory": "tests.helpers.masked:build_model"},
        "data": {"factory": "tests.helpers.masked:load_data"},
        "fit": {"epochs": 1, "batch_size": 8},
        "checkpoint": {"directory": str(tmp_path / "ckpt"), "every_n_steps": 100},
        "freeze": {"output": str(tmp_path / "f.pb"), **freeze},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    return tmp_path / "job.yaml"


def _sidecar(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def test_freeze_probe_verifies_the_train_and_the_freeze_command(tmp_path, capsys):
    # The model outputs NaN on the all-padding rows of a random batch; the factory gives real rows.
    config = _masked_job(tmp_path, probe={"factory": "tests.helpers.masked:probe_rows", "kwargs": {"count": 2}})
    result = run_cli("train", str(config), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sidecar = _sidecar(tmp_path / "f.pb.json")
    assert (sidecar["probe"], sidecar["max_abs_diff"]) == ("freeze.probe factory tests.helpers.masked:probe_rows", 0.0)
    assert main(["freeze", str(config), "-o", str(tmp_path / "again.pb")]) == 0, capsys.readouterr().err
    assert _sidecar(tmp_path / "again.pb.json")["probe"] == "freeze.probe factory tests.helpers.masked:probe_rows"


def test_train_verifies_on_validation_data_else_training_data(tmp_path, capsys):
    config = _masked_job(tmp_path)
    assert main(["train", str(config), "--quiet"]) == 0, capsys.readouterr().err
    assert _sidecar(tmp_path / "f.pb.json")["probe"] == "validation data"
    argv = ["train", str(config), "--quiet", "--set", "data.factory=tests.helpers.masked:load_training_dataset", "--set", "fit.shuffle=false"]
    assert main(argv) == 0, capsys.readouterr().err
    assert _sidecar(tmp_path / "f.pb.json")["probe"] == "training data"


def test_a_bad_freeze_probe_fails_the_job_before_training(tmp_path, capsys):
    config = _masked_job(tmp_path, probe={"factory": "tests.helpers.masked:load_data"})
    assert main(["train", str(config), "--quiet"]) == 2
    assert "has no array for input 'tokens'" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists() or not os.listdir(tmp_path / "ckpt")
