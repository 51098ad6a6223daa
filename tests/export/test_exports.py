"""Versions published by the callback at train end: SavedModel, manifest, promotion, pruning."""

from __future__ import annotations

import json
import os
import shutil
import threading

import numpy as np
import pytest

from tests.helpers import fit, mlp, rows, run_in_tf1_session
from tfcheckpointer.cli import main
from tfcheckpointer.errors import ConfigError, FreezeError
from tfcheckpointer.export import versions
from tfcheckpointer.export.exporter import export_version
from tfcheckpointer.integrations.keras_callback import CheckpointCallback

VERSION_FILES = {"checkpoint", "manifest.json", "model.pb", "saved_model.pb", "variables"}


def train_and_export(tmp_path, run: int, **export):
    callback = CheckpointCallback(
        str(tmp_path / f"ckpt-{run}"), every_n_steps=4,
        freeze={"output": str(tmp_path / f"model-{run}.pb")},
        export={"directory": str(tmp_path / "exports"), **export},
    )
    fit(mlp(seed=run), callback, rows(16, seed=run))
    return callback


def test_three_runs_publish_versions_one_to_three_and_promote_each(tmp_path):
    exported = [train_and_export(tmp_path, run).exported for run in (1, 2, 3)]
    exports = tmp_path / "exports"
    assert [e.version for e in exported] == [1, 2, 3]
    assert sorted(os.listdir(exports)) == ["1", "2", "3", "LATEST", "promotions.jsonl"]
    assert (exports / "LATEST").read_text() == "3\n"
    assert [(e["from"], e["to"], e["by"]) for e in versions.read_promotions(str(exports))] == [
        (None, 1, "auto"), (1, 2, "auto"), (2, 3, "auto"),
    ]
    assert set(os.listdir(exports / "3")) == VERSION_FILES
    manifest = json.loads((exports / "3" / "manifest.json").read_text())
    assert manifest == exported[2].manifest
    assert manifest["version"] == 3
    assert manifest["checkpoint"] == str(tmp_path / "ckpt-3" / "model.ckpt-2")
    assert manifest["step"] == 2
    assert set(manifest["metrics"]) == {"loss"}
    assert manifest["champion"] == {"decision": "promoted", "reason": "no promote_if gate configured"}
    assert len(manifest["config_sha256"]) == 64
    assert manifest["data_fingerprint"] is None
    assert manifest["started"] <= manifest["ended"]
    assert set(manifest["versions"]) == {"tensorflow", "keras", "tfcheckpointer", "python"}
    assert manifest["signature"]["key"] == "serving_default"
    assert manifest["frozen_graph"]["file"] == "model.pb"
    # The runs differ only in their directories' names, so each config hashes differently.
    first = json.loads((exports / "1" / "manifest.json").read_text())
    assert first["config_sha256"] != manifest["config_sha256"]


def test_the_saved_model_serves_what_the_frozen_graph_computes(tmp_path):
    import tensorflow as tf

    version = train_and_export(tmp_path, 1).exported
    inputs, outputs = version.manifest["signature"]["inputs"], version.manifest["signature"]["outputs"]
    x = rows(5, seed=9)[0]
    serving = tf.saved_model.load(version.path).signatures["serving_default"]
    served = serving(**{inputs[0]["name"]: tf.constant(x)})
    frozen = run_in_tf1_session(
        os.path.join(version.path, "model.pb"), {inputs[0]["name"]: x}, [outputs[0]["name"]]
    )
    assert list(served) == [outputs[0]["name"]]
    np.testing.assert_array_equal(served[outputs[0]["name"]].numpy(), frozen[0])


def test_a_version_keeps_its_source_checkpoint_hard_linked(tmp_path):
    import tensorflow as tf

    version = train_and_export(tmp_path, 1).exported
    source = str(tmp_path / "ckpt-1" / "model.ckpt-2")
    kept = os.path.join(version.path, "checkpoint")
    assert version.manifest["checkpoint_copy"] == {"prefix": "checkpoint/model.ckpt-2", "hard_linked": True}
    assert sorted(os.listdir(kept)) == [
        "checkpoint", "model.ckpt-2.data-00000-of-00001", "model.ckpt-2.index",
    ]
    assert os.path.samefile(source + ".index", os.path.join(kept, "model.ckpt-2.index"))
    assert tf.train.latest_checkpoint(kept) == os.path.join(kept, "model.ckpt-2")
    # Retention unlinks the source's names; the version's links keep the data.
    for name in os.listdir(tmp_path / "ckpt-1"):
        if name.startswith("model.ckpt-2"):
            os.remove(tmp_path / "ckpt-1" / name)
    reader = tf.train.load_checkpoint(os.path.join(kept, "model.ckpt-2"))
    assert reader.get_tensor("global_step") == 2
    # TF Serving's loader reads saved_model.pb and variables/ and ignores checkpoint/.
    assert "serving_default" in tf.saved_model.load(version.path).signatures


def test_a_checkpoint_on_another_filesystem_is_copied(tmp_path):
    import tensorflow as tf

    from tfcheckpointer.checkpoint.copies import copy_checkpoint

    train_and_export(tmp_path, 1)
    source = "ram://warm/ckpt"
    tf.io.gfile.makedirs(source)
    for name in os.listdir(tmp_path / "ckpt-1"):
        if name.startswith("model.ckpt-2"):
            tf.io.gfile.copy(str(tmp_path / "ckpt-1" / name), f"{source}/{name}")
    copy = copy_checkpoint(f"{source}/model.ckpt-2", str(tmp_path / "copy"))
    assert (copy.prefix, copy.linked) == (str(tmp_path / "copy" / "model.ckpt-2"), False)
    assert tf.train.latest_checkpoint(str(tmp_path / "copy")) == copy.prefix


def test_a_checkpoint_a_hard_link_cannot_reach_is_copied(tmp_path):
    import tempfile

    from tfcheckpointer.checkpoint.copies import copy_checkpoint

    train_and_export(tmp_path, 1)
    # /dev/shm is a tmpfs of its own on Linux: a link from it to tmp_path fails with EXDEV.
    with tempfile.TemporaryDirectory(dir="/dev/shm") as elsewhere:
        assert os.stat(elsewhere).st_dev != os.stat(tmp_path).st_dev
        for name in os.listdir(tmp_path / "ckpt-1"):
            if name.startswith("model.ckpt-2"):
                shutil.copyfile(tmp_path / "ckpt-1" / name, os.path.join(elsewhere, name))
        copy = copy_checkpoint(os.path.join(elsewhere, "model.ckpt-2"), str(tmp_path / "copy"))
    assert copy.linked is False
    assert sorted(os.listdir(tmp_path / "copy")) == [
        "checkpoint", "model.ckpt-2.data-00000-of-00001", "model.ckpt-2.index",
    ]
    assert (tmp_path / "copy" / "model.ckpt-2.index").read_bytes() == (
        tmp_path / "ckpt-1" / "model.ckpt-2.index"
    ).read_bytes()


def test_listeners_are_told_of_each_version(tmp_path):
    class Exports:
        def __init__(self):
            self.told = []

        def after_export(self, version, path, promoted):
            self.told.append((version, path, promoted, os.path.exists(path)))

    listener = Exports()
    callback = CheckpointCallback(
        str(tmp_path / "ckpt"), every_n_steps=4, freeze={"output": str(tmp_path / "m.pb")},
        export={"directory": str(tmp_path / "exports")}, listeners=[listener],
    )
    fit(mlp(), callback, rows(16))
    assert listener.told == [(1, str(tmp_path / "exports" / "1"), True, True)]


def test_keep_prunes_old_versions(tmp_path):
    for run in (1, 2, 3):
        train_and_export(tmp_path, run, keep=2)
    assert versions.list_versions(str(tmp_path / "exports")) == [2, 3]


def test_pbtxt_format_writes_a_text_graph(tmp_path):
    version = train_and_export(tmp_path, 1, format="pbtxt").exported
    assert set(os.listdir(version.path)) == VERSION_FILES - {"model.pb"} | {"model.pbtxt"}
    assert version.manifest["frozen_graph"]["file"] == "model.pbtxt"
    assert b"node {" in open(os.path.join(version.path, "model.pbtxt"), "rb").read()


def test_a_failed_freeze_publishes_no_version(tmp_path):
    train_and_export(tmp_path, 1)
    (tmp_path / "blocked").write_text("a file, not a directory")
    callback = CheckpointCallback(
        str(tmp_path / "ckpt-2"), every_n_steps=4,
        freeze={"output": str(tmp_path / "blocked" / "model.pb")},
        export={"directory": str(tmp_path / "exports")},
    )
    with pytest.raises(FreezeError, match="Cannot write"):
        fit(mlp(), callback, rows(16))
    assert callback.exported is None
    assert versions.list_versions(str(tmp_path / "exports")) == [1]
    assert (tmp_path / "exports" / "LATEST").read_text() == "1\n"
    assert len(versions.read_promotions(str(tmp_path / "exports"))) == 1


def test_export_needs_a_freeze_section(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"^<arguments>: export: needs the train-end frozen graph, but there is no freeze "
        r"section HINT: add freeze: \{output: \.\.\.\} \(with at_train_end: true",
    ):
        CheckpointCallback(str(tmp_path), every_n_steps=1, export={"directory": str(tmp_path / "e")})


def test_the_session_hook_refuses_an_export_section(tmp_path):
    from tfcheckpointer.integrations.session_hook import CheckpointSessionHook

    with pytest.raises(ConfigError, match=r"export: is not supported by CheckpointSessionHook"):
        CheckpointSessionHook(
            str(tmp_path), every_n_steps=1,
            freeze={"output": "m.pb", "input_names": ["x"], "output_names": ["y"]},
            export={"directory": str(tmp_path / "e")},
        )


def test_a_reader_polling_the_directory_never_sees_a_partial_version(tmp_path):
    callback = train_and_export(tmp_path, 1, keep=2)
    exports = str(tmp_path / "exports")
    partial: list[tuple[int, list[str]]] = []
    seen: set[int] = set()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            for version in versions.list_versions(exports):
                path = os.path.join(exports, str(version))
                try:
                    files = set(os.listdir(path))
                except FileNotFoundError:
                    continue  # pruned between the listing and the look: gone whole
                if not os.path.isdir(path):
                    # Pruned while it was being listed: renamed away, then emptied under the
                    # reader's open handle. Deletion is not publication; skip it.
                    continue
                seen.add(version)
                if files != VERSION_FILES:
                    partial.append((version, sorted(files)))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(4):
            export_version(
                callback.export_config, callback.frozen, job=callback.job_config, metrics={}
            )
    finally:
        done.set()
        reader.join()
    assert partial == []
    assert seen >= {2, 3, 4, 5}
    assert versions.list_versions(exports) == [4, 5]


def test_promote_moves_latest_to_a_kept_version_and_logs_it(tmp_path, capsys):
    for run in (1, 2):
        train_and_export(tmp_path, run)
    exports = str(tmp_path / "exports")
    assert main(["promote", exports, "--version", "1", "--reason", "v2 misroutes"]) == 0
    assert capsys.readouterr().out == f"{exports}: LATEST 2 -> 1\n"
    assert (tmp_path / "exports" / "LATEST").read_text() == "1\n"
    assert versions.read_promotions(exports)[-1] | {"time": None} == {
        "time": None, "from": 2, "to": 1, "by": "manual", "reason": "v2 misroutes",
    }


def test_promote_refuses_a_missing_version_and_leaves_latest(tmp_path, capsys):
    train_and_export(tmp_path, 1)
    exports = str(tmp_path / "exports")
    assert main(["promote", exports, "--version", "9"]) == 2
    assert capsys.readouterr().err == (
        f"tfcheckpointer: error: Version 9 is not in {exports}; it holds versions 1. "
        "LATEST is unchanged.\n"
    )
    assert (tmp_path / "exports" / "LATEST").read_text() == "1\n"
    assert len(versions.read_promotions(exports)) == 1
