"""The `export:` section of a job file; no TensorFlow needed."""

from __future__ import annotations

import pytest

from tfcheckpointer.config import parse_config
from tfcheckpointer.config.schema import ExportConfig, PromoteIfConfig
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


@pytest.mark.parametrize(
    ("promote_if", "expected"),
    [
        ({"monitor": "val_loss"}, PromoteIfConfig("val_loss", "min")),
        ({"monitor": "accuracy"}, PromoteIfConfig("accuracy", "max")),
        (
            {"monitor": "val_f1", "mode": "max", "min_delta": "1e-3", "min_relative_delta": 0.1,
             "at_least": 0.5, "at_most": 1},
            PromoteIfConfig("val_f1", "max", min_delta=0.001, min_relative_delta=0.1, at_most=1.0,
                            at_least=0.5),
        ),
    ],
)
def test_promote_if_is_read_and_its_mode_follows_the_monitor_s_name(promote_if, expected):
    config = parse_config({**BASE, "export": {"directory": "e", "promote_if": promote_if}})
    assert config.export.promote_if == expected


@pytest.mark.parametrize(
    ("promote_if", "message"),
    [
        ({}, r"export.promote_if.monitor: export.promote_if.monitor is required"),
        ({"monitor": "val_loss", "mode": "lower"}, r"export.promote_if.mode: expected one of 'min', 'max', got 'lower'"),
        ({"monitor": "val_loss", "min_relative_delta": -0.1},
         r"export.promote_if.min_relative_delta: expected a number >= 0, got -0.1"),
        ({"monitor": "val_loss", "at_most": "low"},
         r"export.promote_if.at_most: expected a number \(any finite value\), got 'low' \(str\)"),
        ({"monitor": 3}, r"export.promote_if.monitor: expected a metric name"),
        ("val_loss", r"export.promote_if: expected a mapping, got 'val_loss' \(str\)"),
    ],
)
def test_bad_promote_if_keys_are_one_clear_error(promote_if, message):
    with pytest.raises(ConfigError, match=rf"^<dict>: {message}"):
        parse_config({**BASE, "export": {"directory": "e", "promote_if": promote_if}})
