"""The `export:` section of a job file; no TensorFlow needed."""

from __future__ import annotations

import pytest

from tfcheckpointer.config import parse_config
from tfcheckpointer.config.schema import ExportConfig
from tfcheckpointer.errors import ConfigError

BASE = {"checkpoint": {"directory": "ckpt", "every_n_steps": 1}, "freeze": {"output": "m.pb"}}


def test_export_is_read_with_its_defaults():
    config = parse_config({**BASE, "export": {"directory": "$HOME/serving"}})
    assert config.export == ExportConfig(
        directory=config.export.directory, keep=None, format="pb", warm_start="promoted"
    )
    assert not config.export.directory.startswith("$HOME")


def test_export_without_freeze_is_refused():
    with pytest.raises(
        ConfigError,
        match=r"^<dict>: export: needs the train-end frozen graph, but there is no freeze section",
    ):
        parse_config({"checkpoint": BASE["checkpoint"], "export": {"directory": "e"}})


def test_export_needs_the_train_end_freeze():
    with pytest.raises(ConfigError, match=r"but freeze.at_train_end is false"):
        parse_config({
            **BASE, "freeze": {"output": "m.pb", "at_train_end": False}, "export": {"directory": "e"},
        })


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({}, r"export.directory: export.directory is required"),
        ({"directory": "e", "keep": 0}, r"export.keep: expected an integer >= 1, got 0"),
        ({"directory": "e", "format": "onnx"}, r"export.format: expected one of"),
        (
            {"directory": "e", "warm_start": "newest"},
            r"export.warm_start: expected one of 'promoted', 'latest', got 'newest'",
        ),
        ({"directory": "e", "kep": 2}, r"export.kep: unknown key 'kep' HINT: did you mean 'keep'\?"),
    ],
)
def test_bad_export_keys_are_one_clear_error(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**BASE, "export": section})
