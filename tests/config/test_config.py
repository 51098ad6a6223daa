"""Tests of the YAML schema layer; no TensorFlow needed."""

from __future__ import annotations

import copy
import dataclasses
import pathlib
import subprocess
import sys
import textwrap

import pytest

from tfcheckpointer.config import (
    CheckpointConfig,
    FactoryConfig,
    FreezeConfig,
    JobConfig,
    KeepBestConfig,
    apply_overrides,
    load_config,
    parse_checkpoint_section,
    parse_config,
    parse_freeze_section,
    parse_override,
    require_job,
)
from tfcheckpointer.config.factories import import_module, resolve_factory
from tfcheckpointer.errors import ConfigError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

FULL_CONFIG = """\
checkpoint:
  directory: /runs/ckpt
  basename: net.ckpt
  every_n_steps: 100
  every_n_seconds: 60
  max_to_keep: null
  keep_checkpoint_every_n_hours: 2
  include_optimizer: false
  restore: none
  save_at_train_end: false
freeze:
  output: /runs/model.pbtxt
  input_names: [image]
  output_names: [logits, probs/Softmax]
  verify: false
  verify_tolerance: 0.001
  verify_batch_size: 2
  at_train_end: false
model:
  factory: my_project.models:build
  kwargs: {units: 64}
data:
  factory: my_project.data:load
fit:
  epochs: 3
  batch_size: 32
  verbose: auto
  validation_split: 0.25
  shuffle: false
  class_weight: {0: 1.0, 1: 2.5}
seed: 7
"""

# Valid in every section, so one changed value is the only problem.
VALID = {
    "checkpoint": {"directory": "/runs/ckpt", "every_n_steps": 10},
    "freeze": {"output": "/runs/model.pb", "input_names": ["x"], "output_names": ["y"]},
    "model": {"factory": "pkg.models:build"},
    "data": {"factory": "pkg.data:load"},
    "fit": {"epochs": 1},
}


def write(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "job.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def valid_with(section: str, key: str, value: object) -> dict:
    data = copy.deepcopy(VALID)
    data[section][key] = value
    return data


def valid_without(section: str, key: str) -> dict:
    data = copy.deepcopy(VALID)
    del data[section][key]
    return data


# --- Valid files ---------------------------------------------------------------


def test_full_file_round_trips_to_dataclasses(tmp_path):
    path = write(tmp_path, FULL_CONFIG)

    config = load_config(path)

    assert config == JobConfig(
        checkpoint=CheckpointConfig(
            directory="/runs/ckpt",
            basename="net.ckpt",
            every_n_steps=100,
            every_n_seconds=60.0,
            max_to_keep=None,
            keep_checkpoint_every_n_hours=2.0,
            include_optimizer=False,
            restore="none",
            save_at_train_end=False,
        ),
        freeze=FreezeConfig(
            output="/runs/model.pbtxt",
            input_names=("image",),
            output_names=("logits", "probs/Softmax"),
            verify=False,
            verify_tolerance=0.001,
            verify_batch_size=2,
            at_train_end=False,
        ),
        model=FactoryConfig("my_project.models:build", {"units": 64}),
        data=FactoryConfig("my_project.data:load", {}),
        fit={
            "epochs": 3,
            "batch_size": 32,
            "verbose": "auto",
            "validation_split": 0.25,
            "shuffle": False,
            "class_weight": {0: 1.0, 1: 2.5},
        },
        seed=7,
        source=str(path),
    )


def test_minimal_file_gets_defaults(tmp_path):
    path = write(tmp_path, "checkpoint: {directory: /runs/ckpt, every_n_seconds: 30}\n")

    config = load_config(path)

    assert config.checkpoint == CheckpointConfig(directory="/runs/ckpt", every_n_seconds=30.0)
    assert config.checkpoint.max_to_keep == 5
    assert config.checkpoint.restore == "latest"
    assert (config.freeze, config.model, config.data, config.seed) == (None, None, None, None)
    assert config.fit == {}


def test_freeze_defaults():
    config = parse_config(valid_with("freeze", "output", "/m.pb"))

    assert config.freeze == FreezeConfig(
        output="/m.pb", input_names=("x",), output_names=("y",)
    )
    # No tolerance: the freeze derives one from the model's compute dtype.
    assert (config.freeze.verify, config.freeze.verify_tolerance) == (True, None)
    assert (config.freeze.verify_batch_size, config.freeze.at_train_end) == (4, True)


def test_configs_are_frozen():
    config = parse_config(VALID)

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.checkpoint.every_n_steps = 5  # type: ignore[misc]


def test_null_freeze_means_no_freezing():
    assert parse_config(VALID | {"freeze": None}).freeze is None


def test_exponent_without_dot_is_read_as_float(tmp_path):
    # PyYAML reads `1e-5` as a string.
    path = write(
        tmp_path,
        """\
        checkpoint: {directory: /c, every_n_steps: 1}
        freeze: {output: /m.pb, verify_tolerance: 1e-5}
        """,
    )

    assert load_config(path).freeze.verify_tolerance == 1e-05


@pytest.mark.parametrize(
    ("value", "expected"),
    [("latest", "latest"), ("None", "none"), ("/c/model.ckpt-5", "/c/model.ckpt-5")],
)
def test_restore_accepts_modes_and_paths(value, expected):
    assert parse_config(valid_with("checkpoint", "restore", value)).checkpoint.restore == expected


@pytest.mark.parametrize(
    ("value", "mode"),
    [("lastest", "latest"), ("Latset", "latest"), ("last", "latest"), ("nnone", "none"),
     ("non", "none")],
)
def test_a_misspelt_restore_mode_is_refused_with_a_suggestion(tmp_path, monkeypatch, value, mode):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, f"checkpoint:\n  directory: c\n  every_n_steps: 1\n  restore: {value}\n")

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert str(info.value) == (
        f"{path}:4: checkpoint.restore: {value!r} is neither a restore mode ('latest', 'none') "
        f"nor an existing checkpoint or directory HINT: did you mean {mode!r}?"
    )


@pytest.mark.parametrize("existing", ["last", "last.index"])
def test_a_restore_path_that_exists_is_accepted_however_it_is_spelt(
    tmp_path, monkeypatch, existing
):
    # A directory named `last`, or the prefix of `last.index` / `last.data-*` files.
    monkeypatch.chdir(tmp_path)
    (tmp_path / existing).mkdir()

    config = parse_config(valid_with("checkpoint", "restore", "last"))

    assert config.checkpoint.restore == "last"


def test_a_restore_prefix_that_does_not_exist_yet_is_left_to_the_restorer(tmp_path):
    prefix = str(tmp_path / "warm" / "model.ckpt-100")

    assert parse_config(valid_with("checkpoint", "restore", prefix)).checkpoint.restore == prefix


@pytest.mark.parametrize(("text", "got"), [("null", "null"), ("no", r"false \(bool\)")])
def test_a_restore_value_yaml_reads_as_no_string_asks_for_none(tmp_path, text, got):
    path = write(tmp_path, f"checkpoint: {{directory: c, every_n_steps: 1, restore: {text}}}\n")

    with pytest.raises(
        ConfigError,
        match=rf"expected 'latest', 'none' or a checkpoint prefix path, got {got} "
        r"HINT: write 'none' to start fresh or 'latest' to resume",
    ):
        load_config(path)


def test_env_var_and_home_are_expanded(monkeypatch):
    monkeypatch.setenv("HOME", "/home/me")
    monkeypatch.setenv("RUN", "exp1")

    config = parse_config(valid_with("checkpoint", "directory", "~/runs/${RUN}/$RUN"))

    assert config.checkpoint.directory == "/home/me/runs/exp1/exp1"


def test_unset_env_var_is_named(monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)

    with pytest.raises(ConfigError, match="variable 'NO_SUCH_VAR'.* is not set") as info:
        parse_config(valid_with("checkpoint", "directory", "/runs/${NO_SUCH_VAR}"))

    assert info.value.key == "checkpoint.directory"


# --- Unknown and missing keys --------------------------------------------------


def test_unknown_top_level_key_suggests_the_close_one(tmp_path):
    path = write(tmp_path, "chekpoint: {directory: /c, every_n_steps: 1}\n")

    with pytest.raises(ConfigError, match="unknown key 'chekpoint'") as info:
        load_config(path)

    assert (info.value.key, info.value.line, info.value.file) == ("chekpoint", 1, str(path))
    assert info.value.hint == "did you mean 'checkpoint'?"


def test_unknown_nested_key_suggests_the_close_one(tmp_path):
    path = write(
        tmp_path,
        """\
        checkpoint:
          directory: /c
          evry_n_steps: 10
        """,
    )

    with pytest.raises(ConfigError, match="did you mean 'every_n_steps'") as info:
        load_config(path)

    assert (info.value.key, info.value.line) == ("checkpoint.evry_n_steps", 3)


def test_unknown_key_without_close_match_lists_allowed_keys():
    with pytest.raises(ConfigError, match="allowed keys: factory, kwargs") as info:
        parse_config(valid_with("model", "zzz", 1))

    assert info.value.key == "model.zzz"


@pytest.mark.parametrize(
    ("section", "key"),
    [("checkpoint", "directory"), ("freeze", "output"), ("model", "factory"), ("data", "factory")],
)
def test_missing_required_key_is_named(section, key):
    with pytest.raises(ConfigError, match=rf"{section}\.{key} is required") as info:
        parse_config(valid_without(section, key))

    assert info.value.key == f"{section}.{key}"


def test_missing_required_key_points_at_its_section(tmp_path):
    path = write(tmp_path, "seed: 1\ncheckpoint:\n  every_n_steps: 1\n")

    with pytest.raises(ConfigError, match="directory is required") as info:
        load_config(path)

    assert info.value.line == 2


def test_missing_trigger_asks_for_one(tmp_path):
    path = write(tmp_path, "checkpoint:\n  directory: /c\n  every_n_steps: null\n")

    with pytest.raises(ConfigError, match="set every_n_steps or every_n_seconds") as info:
        load_config(path)

    assert (info.value.key, info.value.line) == ("checkpoint", 1)


# --- Wrong values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("checkpoint", "every_n_steps", True, r"expected an integer >= 1, got true \(bool\)"),
        ("checkpoint", "every_n_steps", 2.5, "expected an integer >= 1, got 2.5"),
        ("checkpoint", "every_n_steps", "10", r"expected an integer >= 1, got '10' \(str\)"),
        ("checkpoint", "every_n_seconds", "soon", r"expected a number > 0, got 'soon' \(str\)"),
        ("checkpoint", "every_n_seconds", False, r"expected a number > 0, got false \(bool\)"),
        ("checkpoint", "include_optimizer", "yes please", r"got 'yes please' \(str\)"),
        ("checkpoint", "include_optimizer", 1, "expected a boolean, got 1"),
        ("checkpoint", "spare_data_file", "no", r"expected a boolean, got 'no' \(str\)"),
        ("checkpoint", "directory", ["/c"], r"expected a non-empty path, got \['/c'\] \(list\)"),
        ("checkpoint", "restore", 3, "expected 'latest', 'none' or a checkpoint prefix path"),
        ("freeze", "verify", None, "expected a boolean, got null"),
        ("freeze", "input_names", "x", r"expected a non-empty list of node names, got 'x' \(str\)"),
        ("model", "kwargs", [1], r"expected a mapping, got \[1\] \(list\)"),
        ("fit", "verbose", True, r"expected one of 0, 1, 2, 'auto', got true \(bool\)"),
        ("fit", "shuffle", "true", "expected a boolean"),
        ("fit", "class_weight", [1, 2], "expected a mapping"),
    ],
)
def test_wrong_type_is_reported(section, key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(valid_with(section, key, value), source="job.yaml")

    assert (info.value.key, info.value.file) == (f"{section}.{key}", "job.yaml")


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("checkpoint", "every_n_steps", 0, "expected an integer >= 1, got 0"),
        ("checkpoint", "every_n_seconds", -1, "expected a number > 0, got -1"),
        ("checkpoint", "every_n_seconds", float("inf"), "expected a number > 0, got inf"),
        ("checkpoint", "max_to_keep", 0, "expected an integer >= 1, got 0"),
        ("checkpoint", "keep_checkpoint_every_n_hours", 0, "expected a number > 0, got 0"),
        ("freeze", "verify_tolerance", -1e-3, "expected a number >= 0, got -0.001"),
        ("freeze", "verify_batch_size", 0, "expected an integer >= 1, got 0"),
        ("fit", "epochs", 0, "expected an integer >= 1, got 0"),
        ("fit", "validation_split", 1, "expected a number >= 0 and < 1, got 1"),
        ("fit", "initial_epoch", -1, "expected an integer >= 0, got -1"),
        ("fit", "verbose", 3, "expected one of 0, 1, 2, 'auto', got 3"),
    ],
)
def test_out_of_range_value_is_reported(section, key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(valid_with(section, key, value))

    assert info.value.key == f"{section}.{key}"


@pytest.mark.parametrize("basename", ["", "a/b", "a\\b", "model-"])
def test_bad_basename_is_rejected(basename):
    with pytest.raises(ConfigError, match="expected a file name without") as info:
        parse_config(valid_with("checkpoint", "basename", basename))

    assert info.value.key == "checkpoint.basename"


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_must_be_one_numpy_accepts(seed):
    data = VALID | {"seed": seed}

    with pytest.raises(ConfigError, match=f"expected an integer from 0 to 4294967295, got {seed}") as info:
        parse_config(data)

    assert info.value.key == "seed"


def test_wrong_value_reports_its_line(tmp_path):
    path = write(tmp_path, "checkpoint:\n  directory: /c\n\n  every_n_steps: 0\n")

    with pytest.raises(ConfigError) as info:
        load_config(path)

    assert (info.value.line, info.value.file) == (4, str(path))


def test_section_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"expected a mapping, got '/c' \(str\)") as info:
        parse_config({"checkpoint": "/c"})

    assert info.value.key == "checkpoint"


# --- Freeze node names and factories -------------------------------------------


def test_freeze_output_needs_a_graph_extension():
    with pytest.raises(ConfigError, match=r"ending in \.pb or \.pbtxt, got '/m\.h5'") as info:
        parse_config(valid_with("freeze", "output", "/m.h5"))

    assert info.value.key == "freeze.output"


@pytest.mark.parametrize("name", ["", "_private", "has space", "x;y", 3])
def test_bad_node_name_is_rejected(name):
    with pytest.raises(ConfigError, match="expected a TensorFlow node name") as info:
        parse_config(valid_with("freeze", "input_names", ["ok", name]))

    assert info.value.key == "freeze.input_names[1]"


def test_a_tensor_name_other_than_the_first_output_asks_for_the_node_name(tmp_path):
    path = write(
        tmp_path,
        """\
        checkpoint: {directory: /c, every_n_steps: 1}
        freeze:
          output: /m.pb
          output_names:
            - logits
            - probs:1
        """,
    )

    with pytest.raises(ConfigError, match="not the tensor name 'probs:1'") as info:
        load_config(path)

    assert (info.value.key, info.value.line) == ("freeze.output_names[1]", 6)


def test_a_first_output_tensor_name_is_read_as_its_node_as_on_the_command_line():
    config = parse_config(valid_with("freeze", "output_names", ["output/predict:0", "logits"]))
    assert config.freeze.output_names == ("output/predict", "logits")


def test_a_name_with_and_without_its_first_output_suffix_is_a_duplicate():
    with pytest.raises(ConfigError, match="duplicate node name 'x'"):
        parse_config(valid_with("freeze", "output_names", ["x", "x:0"]))


def test_duplicate_node_name_within_a_list_is_rejected():
    with pytest.raises(ConfigError, match=r"duplicate node name 'x', also at .*_names\[0\]"):
        parse_config(valid_with("freeze", "input_names", ["x", "x"]))


def test_node_name_in_inputs_and_outputs_is_rejected():
    with pytest.raises(ConfigError, match="duplicate node name 'x'") as info:
        parse_config(valid_with("freeze", "output_names", ["x"]))

    assert info.value.key == "freeze.output_names[0]"


def test_empty_node_name_list_is_rejected():
    with pytest.raises(ConfigError, match=r"non-empty list of node names, got \[\]"):
        parse_config(valid_with("freeze", "input_names", []))


@pytest.mark.parametrize(
    "factory", ["pkg.models.build", "pkg:models:build", "pkg.:build", "1pkg:build", "pkg:", 42]
)
def test_bad_factory_reference_is_rejected(factory):
    with pytest.raises(ConfigError, match="expected 'package.module:function'") as info:
        parse_config(valid_with("model", "factory", factory))

    assert info.value.key == "model.factory"


def test_factory_reference_may_name_a_nested_attribute():
    config = parse_config(valid_with("data", "factory", "pkg.data:Loader.build"))

    assert config.data.factory == "pkg.data:Loader.build"


def test_kwargs_keys_must_be_strings():
    with pytest.raises(ConfigError, match="keyword names") as info:
        parse_config(valid_with("model", "kwargs", {1: "a"}))

    assert info.value.key == "model.kwargs"


# --- Importing factory modules -------------------------------------------------


@pytest.fixture
def elsewhere(monkeypatch, tmp_path):
    """An empty current directory; sys.path and sys.modules as they were afterwards."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(cwd))])
    before = set(sys.modules)
    yield cwd
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_factory_module_in_the_current_directory_is_found(elsewhere):
    (elsewhere / "tfc_cwd_factories.py").write_text("def build(units):\n    return units * 2\n")

    build = resolve_factory(FactoryConfig("tfc_cwd_factories:build"), key="model.factory", source="j")

    assert build(units=3) == 6


def test_an_unimportable_factory_module_says_where_it_was_looked_for(elsewhere):
    with pytest.raises(ConfigError) as info:
        resolve_factory(FactoryConfig("tfc_missing.models:build"), key="model.factory", source="j")

    assert str(info.value) == (
        "j: model.factory: cannot import module 'tfc_missing.models': no module 'tfc_missing' "
        f"in the current directory ({elsewhere}) or on sys.path (the installed packages) "
        "HINT: run from the directory that holds tfc_missing.py (or the tfc_missing/ package), "
        "add that directory to PYTHONPATH, or pip install the project"
    )


def test_a_factory_module_beside_the_job_file_is_pointed_at(elsewhere, tmp_path):
    # Not searched: the job file's relative paths, and so its modules, are the current directory's.
    (tmp_path / "tfc_beside.py").write_text("def build():\n    pass\n")
    job = write(tmp_path, "checkpoint: {directory: c, every_n_steps: 1}\n")

    with pytest.raises(ConfigError, match=(
        rf"no module 'tfc_beside' in the current directory \({elsewhere}\).* HINT: tfc_beside.py "
        rf"is beside the job file, in {tmp_path}, which is not searched; run from that directory"
    )):
        resolve_factory(FactoryConfig("tfc_beside:build"), key="model.factory", source=str(job))


def test_a_missing_module_inside_a_found_package_names_the_package(elsewhere):
    (elsewhere / "tfc_package").mkdir()
    (elsewhere / "tfc_package" / "__init__.py").write_text("")

    with pytest.raises(ConfigError, match=(
        rf"cannot import module 'tfc_package.models': package 'tfc_package' "
        rf"\({elsewhere / 'tfc_package'}\) has no module 'models'$"
    )):
        import_module("tfc_package.models", key="--import", source="<command line>")


def test_an_import_failing_inside_the_module_is_reported_as_such(elsewhere):
    (elsewhere / "tfc_broken.py").write_text("import tfc_not_installed\n")

    with pytest.raises(ConfigError, match=(
        r"^<command line>: --import: cannot import module 'tfc_broken': "
        r"No module named 'tfc_not_installed'$"
    )):
        import_module("tfc_broken", key="--import", source="<command line>")


def test_a_module_name_with_a_path_separator_is_refused():
    with pytest.raises(ConfigError) as info:
        import_module("src/my_layers.py", key="--import", source="<command line>")

    assert str(info.value) == (
        "<command line>: --import: expected a module name such as my_project.layers, "
        "got 'src/my_layers.py' HINT: give the module's dotted name, e.g. src.my_layers"
    )


@pytest.mark.parametrize("present", [False, True])
def test_a_file_name_given_for_a_module_gets_a_hint(elsewhere, present):
    if present:
        (elsewhere / "tfc_layers.py").write_text("")

    with pytest.raises(ConfigError, match=(
        r"^<command line>: --import: cannot import module 'tfc_layers.py': .* "
        r"HINT: give the module's dotted name, e.g. tfc_layers$"
    )):
        import_module("tfc_layers.py", key="--import", source="<command line>")


# --- fit -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "hint"),
    [("callbacks", "checkpoint callback"), ("x", "data factory"), ("y", "data factory")],
)
def test_fit_rejects_what_the_tool_supplies(key, hint):
    with pytest.raises(ConfigError, match="cannot be set in the config") as info:
        parse_config(valid_with("fit", key, []))

    assert info.value.key == f"fit.{key}"
    assert hint in info.value.hint


def test_fit_rejects_unknown_keys():
    with pytest.raises(ConfigError, match="unknown key 'epoch'") as info:
        parse_config(valid_with("fit", "epoch", 2))

    assert info.value.hint == "did you mean 'epochs'?"


# --- Files ---------------------------------------------------------------------


def test_missing_file_is_reported(tmp_path):
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError, match="cannot read config file: No such file") as info:
        load_config(path)

    assert info.value.file == str(path)


def test_directory_instead_of_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)


def test_non_utf8_file_is_reported(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes(b"checkpoint: \xff\n")

    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path)


def test_malformed_yaml_reports_the_line(tmp_path):
    path = write(tmp_path, "checkpoint:\n  directory: /c\n  every_n_steps: [1\n\nseed: 1\n")

    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_config(path)

    assert info.value.file == str(path)
    assert info.value.line == 5


def test_recursive_yaml_alias_loads(tmp_path):
    path = write(
        tmp_path,
        """\
        checkpoint: {directory: /c, every_n_steps: 1}
        model: {factory: pkg:build, kwargs: &loop {again: *loop}}
        """,
    )

    assert load_config(path).model.factory == "pkg:build"


def test_python_tags_are_refused(tmp_path):
    path = write(tmp_path, "checkpoint: !!python/object/apply:os.getcwd []\n")

    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_config(path)

    assert info.value.line == 1


@pytest.mark.parametrize(("text", "got"), [("- a\n- b\n", "list"), ("just text\n", "str")])
def test_top_level_must_be_a_mapping(tmp_path, text, got):
    with pytest.raises(ConfigError, match=rf"expected a mapping of sections.*\({got}\)") as info:
        load_config(write(tmp_path, text))

    assert info.value.key is None


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file_needs_a_checkpoint_section(tmp_path, text):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError, match="checkpoint is required") as info:
        load_config(path)

    assert (info.value.key, info.value.file) == ("checkpoint", str(path))


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -1, 2.5, float("nan"), 10**400, "", "x:0", [], [None], {}, {"a": 1}, {1: 2}],
)
@pytest.mark.parametrize(
    ("section", "key"),
    [(section, key) for section in VALID for key in VALID[section]]
    + [("checkpoint", "restore"), ("freeze", "verify"), ("fit", "verbose"), ("fit", "shuffle")],
)
def test_any_value_gives_a_config_or_a_config_error(section, key, value):
    try:
        parse_config(valid_with(section, key, value))
    except ConfigError as error:
        assert error.key is not None and error.key.startswith(section)


# --- Overrides -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("checkpoint.every_n_steps=10", ("checkpoint.every_n_steps", 10)),
        ("freeze.verify=false", ("freeze.verify", False)),
        ("freeze.input_names=[a, b]", ("freeze.input_names", ["a", "b"])),
        ("checkpoint.directory=/a=b", ("checkpoint.directory", "/a=b")),
        ("seed=", ("seed", None)),
    ],
)
def test_parse_override_reads_the_value_as_yaml(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["checkpoint.every_n_steps", "=3", "a..b=1", ".a=1", "a b=1"])
def test_parse_override_rejects_bad_form(text):
    with pytest.raises(ConfigError, match="expected KEY=VALUE") as info:
        parse_override(text)

    assert info.value.file == "<--set>"


def test_parse_override_rejects_bad_yaml_value():
    with pytest.raises(ConfigError, match="cannot read the value") as info:
        parse_override("freeze.input_names=[a")

    assert (info.value.file, info.value.key) == ("<--set>", "freeze.input_names")


def test_apply_overrides_creates_missing_sections_and_copies():
    data = {"checkpoint": {"directory": "/c"}, "freeze": None}

    result = apply_overrides(
        data, {"freeze.output": "/m.pb", "fit.epochs": 2, "checkpoint.every_n_steps": 5}, source="s"
    )

    assert result == {
        "checkpoint": {"directory": "/c", "every_n_steps": 5},
        "freeze": {"output": "/m.pb"},
        "fit": {"epochs": 2},
    }
    assert data == {"checkpoint": {"directory": "/c"}, "freeze": None}


def test_override_inside_a_scalar_is_an_error():
    data = {"checkpoint": {"directory": "/c"}}

    with pytest.raises(ConfigError, match="cannot set 'checkpoint.directory.x'") as info:
        apply_overrides(data, {"checkpoint.directory.x": 1}, source="s")

    assert "checkpoint.directory is '/c' (str), not a mapping" in info.value.message
    assert (info.value.key, info.value.file) == ("checkpoint.directory.x", "s")


def test_load_config_applies_overrides(tmp_path):
    path = write(tmp_path, "checkpoint: {directory: /c, every_n_steps: 1}\n")

    config = load_config(path, {"checkpoint.every_n_steps": 50, "seed": 3})

    assert (config.checkpoint.every_n_steps, config.seed) == (50, 3)


def test_error_in_an_overridden_value_has_no_file_line(tmp_path):
    path = write(tmp_path, "checkpoint:\n  directory: /c\n  every_n_steps: 1\n")

    with pytest.raises(ConfigError, match="got 0") as info:
        load_config(path, {"checkpoint.every_n_steps": 0})

    assert (info.value.key, info.value.line) == ("checkpoint.every_n_steps", None)


# --- Python-argument entry points and train requirements -----------------------


def test_checkpoint_section_from_arguments_accepts_paths():
    config = parse_checkpoint_section(
        {"directory": pathlib.Path("/c"), "every_n_steps": 1}, prefix=""
    )

    assert config.directory == "/c"


def test_checkpoint_section_from_arguments_names_bare_keys():
    with pytest.raises(ConfigError, match="missing trigger") as info:
        parse_checkpoint_section({"directory": "/c"}, prefix="")

    assert (info.value.key, info.value.file) == (None, "<arguments>")


def test_freeze_section_none_means_no_freezing():
    assert parse_freeze_section(None) is None


def test_freeze_section_from_arguments_accepts_tuples():
    config = parse_freeze_section({"output": "/m.pb", "input_names": ("a", "b")})

    assert config.input_names == ("a", "b")


@pytest.mark.parametrize("section", ["model", "data"])
def test_require_job_names_the_missing_factory(section):
    config = parse_config(valid_without(section, "factory") | {section: None}, source="job.yaml")

    with pytest.raises(ConfigError, match=rf"{section}\.factory is required to train") as info:
        require_job(config)

    assert (info.value.key, info.value.file) == (f"{section}.factory", "job.yaml")


def test_require_job_returns_a_complete_config():
    config = parse_config(VALID)

    assert require_job(config) is config


def test_importing_config_does_not_import_tensorflow():
    code = "import sys, tfcheckpointer.config; assert 'tensorflow' not in sys.modules"

    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_freeze_probe_names_a_factory_with_kwargs():
    probe = {"factory": "pkg.data:probe", "kwargs": {"rows": 8}}
    config = parse_config(valid_with("freeze", "probe", probe))

    assert config.freeze.probe == FactoryConfig("pkg.data:probe", {"rows": 8})
    assert parse_config(VALID).freeze.probe is None


@pytest.mark.parametrize(
    "probe, key, message",
    [
        ("pkg.data:probe", "freeze.probe", "expected a mapping"),
        ({"factory": "pkg.data.probe"}, "freeze.probe.factory", "expected 'package.module:function'"),
        ({"factory": "pkg:probe", "rows": 4}, "freeze.probe.rows", "unknown key 'rows'"),
    ],
)
def test_a_bad_freeze_probe_is_rejected(probe, key, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(valid_with("freeze", "probe", probe))

    assert info.value.key == key


# --- freeze.constants ------------------------------------------------------------


def test_freeze_constants_bind_node_names_to_booleans_and_numbers(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(textwrap.dedent("""\
        checkpoint: {directory: /c, every_n_steps: 1}
        freeze:
          output: /m.pb
          constants: {is_training: false, model/keep_prob: 1.0, mode: 0}
    """))
    constants = load_config(path).freeze.constants
    assert constants == {"is_training": False, "model/keep_prob": 1.0, "mode": 0}
    assert parse_config(VALID).freeze.constants == {}


def test_freeze_constants_take_the_first_outputs_tensor_name_as_the_node():
    config = parse_config(valid_with("freeze", "constants", {"is_training:0": False}))
    assert config.freeze.constants == {"is_training": False}


@pytest.mark.parametrize(
    ("constants", "key", "message"),
    [
        ([True], "freeze.constants", r"expected a mapping, got \[True\] \(list\)"),
        ({"is_training": "no"}, "freeze.constants.is_training",
         r"expected a boolean or a number, got 'no' \(str\) HINT: e.g. is_training: false"),
        ({"is_training": None}, "freeze.constants.is_training", "expected a boolean or a number, got null"),
        ({"is_training:1": False}, "freeze.constants",
         r"expected TensorFlow node names as keys .*, got 'is_training:1' \(str\) HINT: write 'is_training'"),
        ({"x": True}, "freeze.constants.x",
         "'x' is bound to a constant and listed in input_names HINT: a bound placeholder is no "
         "input of the frozen graph; drop one of the two"),
    ],
)
def test_bad_freeze_constants_are_refused(constants, key, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(valid_with("freeze", "constants", constants), source="job.yaml")
    assert (info.value.key, info.value.file) == (key, "job.yaml")


# --- checkpoint.keep_best --------------------------------------------------------------


def test_keep_best_is_read_from_yaml(tmp_path):
    path = write(tmp_path, """\
        checkpoint:
          directory: /c
          every_n_steps: 5
          keep_best: {k: 3, monitor: val_loss, mode: min}
        """)
    assert load_config(path).checkpoint.keep_best == KeepBestConfig(monitor="val_loss", mode="min", k=3)


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [("val_loss", "min"), ("loss", "min"), ("mean_absolute_error", "min"),
     ("accuracy", "max"), ("val_sparse_categorical_accuracy", "max"), ("val_auc", "max")],
)
def test_keep_best_mode_follows_the_monitor_name(monitor, mode):
    keep_best = parse_config(valid_with("checkpoint", "keep_best", {"monitor": monitor})).checkpoint.keep_best
    assert (keep_best.mode, keep_best.k) == (mode, 1)


def test_keep_best_mode_is_required_for_a_name_that_does_not_tell():
    with pytest.raises(
        ConfigError,
        match=r"cannot tell from the name 'mae' whether a lower or a higher value is better "
        r"HINT: add mode: min or mode: max",
    ) as info:
        parse_config(valid_with("checkpoint", "keep_best", {"monitor": "mae"}))
    assert info.value.key == "checkpoint.keep_best.mode"


@pytest.mark.parametrize(
    ("keep_best", "key", "message"),
    [
        ({"k": 2}, "checkpoint.keep_best.monitor", "checkpoint.keep_best.monitor is required"),
        ({"monitor": "loss", "k": 0}, "checkpoint.keep_best.k", "expected an integer >= 1, got 0"),
        ({"monitor": "loss", "mode": "lowest"}, "checkpoint.keep_best.mode",
         r"expected one of 'min', 'max', got 'lowest' \(str\)"),
        ({"monitor": 3}, "checkpoint.keep_best.monitor", "expected a metric name as fit"),
        ({"monitor": "loss", "patience": 2}, "checkpoint.keep_best.patience", "unknown key 'patience'"),
        ("val_loss", "checkpoint.keep_best", r"expected a mapping, got 'val_loss' \(str\)"),
    ],
)
def test_bad_keep_best_is_refused(keep_best, key, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_config(valid_with("checkpoint", "keep_best", keep_best))
    assert info.value.key == key


def test_keep_best_is_a_keyword_of_the_checkpoint_section():
    section = parse_checkpoint_section(
        {"directory": "/c", "every_n_steps": 1, "keep_best": {"monitor": "accuracy", "k": 2}}, prefix=""
    )
    assert section.keep_best == KeepBestConfig(monitor="accuracy", mode="max", k=2)
