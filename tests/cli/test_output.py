"""What the command line prints: its own output, each save once, TensorFlow's start-up lines only on -v."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_frozen_graph

ROOT = Path(__file__).resolve().parents[2]
# What TensorFlow 2.21 prints from C++ while it is imported (see TF_FACTS.md, "Logging").
START_UP_LINES = re.compile(r"oneDNN custom operations|absl::InitializeLog|cuda drivers|cuInit")
PROGRESS = re.compile(r"Epoch \d+/\d+|\d+/\d+ [━=]|\d+/\d+ - \d+m?s")


def tfcheckpointer(*args: str, cwd: Path, python_flags: tuple[str, ...] = (), env: dict | None = None):
    """The command as a user runs it: no TF_CPP_MIN_LOG_LEVEL of ours in the environment."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), *(env or {}).pop("PYTHONPATH", "").split(os.pathsep)]).rstrip(os.pathsep)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "tfcheckpointer", *args], cwd=cwd, env=environment,
        capture_output=True, text=True, timeout=600,
    )


def imported_modules(importtime_output: str) -> set[str]:
    """Module names from `python -X importtime` lines (`import time: self | cumulative | name`)."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_output.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def is_keras(module: str) -> bool:
    return module == "keras" or module.startswith("keras.")


@pytest.fixture(scope="module")
def frozen(tmp_path_factory) -> Path:
    return write_frozen_graph(tmp_path_factory.mktemp("frozen"))


def job(tmp_path: Path, *, verbose: int) -> Path:
    (tmp_path / "job.yaml").write_text(
        "checkpoint: {directory: ckpt, every_n_steps: 2}\n"
        "model: {factory: 'tests.helpers:mlp'}\n"
        "data: {factory: 'tests.helpers:rows'}\n"
        f"fit: {{epochs: 1, batch_size: 16, verbose: {verbose}}}\n"
    )
    return tmp_path / "job.yaml"


@pytest.mark.slow
def test_train_reports_each_save_once_and_hides_tensorflows_start_up(tmp_path):
    result = tfcheckpointer("train", str(job(tmp_path, verbose=2)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert not START_UP_LINES.search(output), output
    for step in (2, 4):  # 64 rows in batches of 16
        assert len(re.findall(rf"Saved checkpoint\b.*\bckpt/model\.ckpt-{step}\b", output)) == 1, output
    assert PROGRESS.search(result.stdout)  # fit.verbose: 2


@pytest.mark.slow
def test_quiet_overrides_fit_verbose(tmp_path):
    result = tfcheckpointer("train", str(job(tmp_path, verbose=1)), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not PROGRESS.search(result.stdout + result.stderr), result.stdout
    assert "Saved checkpoint step=4" in result.stderr
    assert result.stdout.strip() == "Trained to step 4; latest checkpoint ckpt/model.ckpt-4"


def test_inspect_prints_only_its_report(frozen):
    result = tfcheckpointer("inspect", str(frozen), cwd=frozen.parent)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"file:         {frozen} (binary GraphDef")


def test_verbose_shows_tensorflows_start_up(frozen):
    result = tfcheckpointer("inspect", str(frozen), "-v", cwd=frozen.parent)
    assert result.returncode == 0, result.stderr
    assert START_UP_LINES.search(result.stderr), result.stderr


@pytest.mark.parametrize("command", [["inspect", "frozen.pb"], ["convert", "frozen.pb", "copy.pbtxt"]])
def test_inspect_and_convert_load_no_keras(frozen, command):
    # -v: the import lines of TensorFlow itself go to stderr too, not to the hidden start-up log.
    result = tfcheckpointer(*command, "-v", cwd=frozen.parent, python_flags=("-X", "importtime"))
    assert result.returncode == 0, result.stderr
    modules = imported_modules(result.stderr)
    assert "tensorflow" in modules
    assert not [m for m in modules if is_keras(m)]


def test_validate_loads_no_tensorflow(tmp_path):
    result = tfcheckpointer(
        "validate", str(ROOT / "configs" / "digits.yaml"), cwd=tmp_path, python_flags=("-X", "importtime")
    )
    assert result.returncode == 0, result.stderr
    modules = imported_modules(result.stderr)
    assert "yaml" in modules
    assert not [m for m in modules if m.split(".")[0] in ("tensorflow", "keras")]


def test_tensorflows_messages_are_shown_when_it_fails_to_load(frozen, tmp_path):
    # A TensorFlow whose import prints from native code, then fails, as a broken install does.
    broken = tmp_path / "broken" / "tensorflow"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text(
        "import os\nos.write(2, b'E native: libtensorflow_framework.so.2: cannot open shared object file\\n')\n"
        "raise ImportError('libtensorflow_framework.so.2: cannot open shared object file')\n"
    )
    result = tfcheckpointer(
        "inspect", str(frozen), cwd=tmp_path, env={"PYTHONPATH": str(broken.parent)}
    )
    assert result.returncode == 2
    assert "E native: libtensorflow_framework.so.2" in result.stderr
    assert "tfcheckpointer: error: TensorFlow failed to load: libtensorflow_framework.so.2" in result.stderr
    assert "Traceback" not in result.stderr
