"""The adapters' constructors list every option, typed and with the YAML key's default."""

from __future__ import annotations

import dataclasses
import inspect
import pydoc

import pytest

from tfcheckpointer import CheckpointCallback, CheckpointSessionHook
from tfcheckpointer.config import CheckpointConfig

ADAPTERS = [CheckpointCallback, CheckpointSessionHook]


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.__name__)
def test_every_checkpoint_option_is_a_keyword_with_the_configs_default(adapter):
    parameters = inspect.signature(adapter).parameters
    fields = dataclasses.fields(CheckpointConfig)
    assert list(parameters) == [f.name for f in fields] + [
        "freeze", "export", "probe", "listeners", "validation_data", "verbose",
    ]
    assert parameters["directory"].default is inspect.Parameter.empty
    for field in fields[1:]:
        parameter = parameters[field.name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, field.name
        assert parameter.default == field.default, field.name
        assert parameter.annotation != inspect.Parameter.empty, field.name


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.__name__)
def test_help_shows_each_option_with_its_type_default_and_meaning(adapter):
    text = pydoc.render_doc(adapter, renderer=pydoc.plaintext)
    assert "every_n_steps: 'int | None' = None" in text
    assert "save_on_signals: 'Sequence[str]' = ('SIGTERM', 'SIGINT')" in text
    for field in dataclasses.fields(CheckpointConfig):
        assert f"  {field.name}: " in text, field.name  # its line under Args:


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.__name__)
def test_the_constructors_return_the_adapters_own_type(adapter, tmp_path):
    built = adapter.from_dict({"checkpoint": {"directory": str(tmp_path), "every_n_steps": 3}})
    assert type(built) is adapter
    assert built.checkpoint_config.every_n_steps == 3
    assert inspect.signature(adapter.from_yaml).return_annotation == "_Adapter"
