"""`tfcheckpointer inspect`: checkpoints and graph files described, bad files refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from tests.helpers import mlp, write_frozen_graph, write_graph_mode_files
from tfcheckpointer import CheckpointCallback
from tfcheckpointer.cli import main
from tfcheckpointer.errors import TfCheckpointerError
from tfcheckpointer.graph.files import read_graph_def
from tfcheckpointer.graph.inspection import inspect_path

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_KEYS = {
    "kind", "path", "prefix", "step", "step_source", "variables", "variable_count",
    "total_bytes", "files", "checkpoints",
}
GRAPH_KEYS = {
    "kind", "path", "format", "bytes", "node_count", "ops", "inputs", "inputs_source",
    "outputs", "outputs_source", "frozen", "variable_ops", "functions", "meta_graph",
}
X = {"name": "x", "tensor": "x:0", "dtype": "float32", "shape": [None, 3]}
Y = {"name": "y", "tensor": "y:0", "dtype": "float32", "shape": [None, 2]}


# --- the files, shared with test_convert -------------------------------------------------------


@pytest.fixture(scope="module")
def frozen(tmp_path_factory) -> Path:
    return write_frozen_graph(tmp_path_factory.mktemp("frozen"))


@pytest.fixture(scope="module")
def graph_mode(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("graph_mode")
    write_graph_mode_files(directory)
    return directory


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """A run directory with checkpoints at steps 2 and 4 (16 rows, batches of 4)."""
    directory = tmp_path_factory.mktemp("run") / "checkpoints"
    x = np.random.default_rng(0).standard_normal((16, 4)).astype("float32")
    callback = CheckpointCallback(directory=str(directory), every_n_steps=2, max_to_keep=None)
    mlp().fit(x, x[:, :1], batch_size=4, epochs=1, verbose=0, callbacks=[callback])
    return directory


def inspect_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["inspect", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


# --- checkpoints -----------------------------------------------------------------------------


def test_a_prefix_lists_every_variable_with_shape_dtype_and_bytes(checkpoints):
    report = inspect_path(str(checkpoints / "model.ckpt-4"))
    reader = tf.train.load_checkpoint(str(checkpoints / "model.ckpt-4"))
    dtypes = reader.get_variable_to_dtype_map()
    assert report["variables"] == [
        {"key": key, "shape": shape, "dtype": dtypes[key].name,
         "bytes": int(np.prod(shape)) * dtypes[key].size}
        for key, shape in tf.train.list_variables(str(checkpoints / "model.ckpt-4"))
    ]
    assert report["variable_count"] == len(report["variables"])
    assert report["total_bytes"] == sum(v["bytes"] for v in report["variables"])


def test_the_step_is_the_global_step_tensor(checkpoints):
    report = inspect_path(str(checkpoints / "model.ckpt-4"))
    assert (report["step"], report["step_source"]) == (4, "global_step")


def test_without_a_global_step_the_step_comes_from_the_prefix(graph_mode):
    report = inspect_path(str(graph_mode / "model.ckpt-7"))
    assert [v["key"] for v in report["variables"]] == ["w"]
    assert (report["step"], report["step_source"]) == (7, "prefix")


def test_the_index_file_stands_for_its_prefix(checkpoints):
    prefix = str(checkpoints / "model.ckpt-2")
    by_index = inspect_path(prefix + ".index")
    assert by_index["path"] == prefix + ".index"
    assert {**by_index, "path": prefix} == inspect_path(prefix)


def test_files_are_listed_with_their_sizes(checkpoints):
    files = inspect_path(str(checkpoints / "model.ckpt-2"))["files"]
    expected = sorted(n for n in os.listdir(checkpoints) if n.startswith("model.ckpt-2."))
    assert [os.path.basename(f["path"]) for f in files] == expected
    assert [f["bytes"] for f in files] == [os.path.getsize(f["path"]) for f in files]


def test_a_directory_shows_its_newest_checkpoint_and_lists_all(checkpoints):
    report = inspect_path(str(checkpoints))
    assert report["prefix"] == str(checkpoints / "model.ckpt-4")
    assert report["checkpoints"] == [
        {"prefix": str(checkpoints / "model.ckpt-2"), "step": 2},
        {"prefix": str(checkpoints / "model.ckpt-4"), "step": 4},
    ]


def test_without_a_state_file_the_highest_step_is_newest(checkpoints, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(checkpoints, copy)
    os.remove(copy / "checkpoint")
    assert inspect_path(str(copy))["prefix"] == str(copy / "model.ckpt-4")



def test_a_damaged_state_file_is_one_warning_and_the_files_decide(checkpoints, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(checkpoints, copy)
    (copy / "checkpoint").write_text("model_checkpoint_path: \"model.ckpt-2\"\ngarbage {")
    assert main(["inspect", str(copy)]) == 0
    out, err = capsys.readouterr()
    assert err.startswith(f"tfcheckpointer: warning: Ignoring {copy}/checkpoint: ")
    assert err.count("\n") == 1
    assert f"checkpoint:   {copy}/model.ckpt-4" in out


def test_a_damaged_state_file_without_checkpoints_exits_2_in_one_line(tmp_path, capsys):
    (tmp_path / "checkpoint").write_text("garbage {")
    assert main(["inspect", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfcheckpointer: error: No checkpoint in directory {tmp_path}: ")
    assert err.count("\n") == 1

def test_a_prefix_has_no_checkpoint_list(checkpoints):
    assert inspect_path(str(checkpoints / "model.ckpt-4"))["checkpoints"] is None


# --- graph files -----------------------------------------------------------------------------


def test_a_frozen_graph_is_frozen_with_its_sidecars_inputs_and_outputs(frozen):
    report = inspect_path(str(frozen))
    assert report["frozen"] is True and report["variable_ops"] == []
    assert report["inputs"] == [
        {"name": "inputs/X", "tensor": "inputs/X:0", "dtype": "float32", "shape": [None, 4]}
    ]
    assert report["outputs"] == [
        {"name": "output/y", "tensor": "output/y:0", "dtype": "float32", "shape": [None, 1]}
    ]
    assert (report["inputs_source"], report["outputs_source"]) == ("sidecar", "sidecar")


def test_without_a_sidecar_inputs_are_placeholders_and_outputs_the_sinks(frozen, tmp_path):
    shutil.copy(frozen, tmp_path / "frozen.pb")
    report = inspect_path(str(tmp_path / "frozen.pb"))
    assert [i["name"] for i in report["inputs"]] == ["inputs/X"]
    assert report["outputs"] == [
        {"name": "Identity", "tensor": "Identity:0", "dtype": "float32", "shape": [None, 1]}
    ]
    assert (report["inputs_source"], report["outputs_source"]) == ("placeholders", "sinks")


def test_node_count_size_and_op_histogram(frozen):
    report = inspect_path(str(frozen))
    graph_def = read_graph_def(str(frozen))
    assert report["node_count"] == len(graph_def.node) == sum(report["ops"].values())
    assert report["ops"]["Placeholder"] == 1
    assert list(report["ops"].values()) == sorted(report["ops"].values(), reverse=True)
    assert (report["format"], report["bytes"]) == ("binary", os.path.getsize(frozen))


def test_a_pbtxt_reports_the_same_graph_as_its_pb(frozen, tmp_path):
    text = tmp_path / "frozen.pbtxt"
    text.write_text(text_format.MessageToString(read_graph_def(str(frozen))))
    shutil.copy(frozen, tmp_path / "frozen.pb")
    binary = inspect_path(str(tmp_path / "frozen.pb"))
    report = inspect_path(str(text))
    assert report["format"] == "text"
    ignored = {"path", "format", "bytes"}
    assert {k: v for k, v in report.items() if k not in ignored} == {
        k: v for k, v in binary.items() if k not in ignored
    }


def test_a_graph_with_variables_is_not_frozen_and_names_them(graph_mode):
    report = inspect_path(str(graph_mode / "graph.pb"))
    assert report["frozen"] is False
    assert {"name": "w", "op": "VarHandleOp", "function": None} in report["variable_ops"]


def test_sinks_leave_out_no_ops_variable_checks_and_the_saver(graph_mode):
    graph_def = read_graph_def(str(graph_mode / "graph.pb"))
    names = {n.name for n in graph_def.node}
    assert {"init", "save/control_dependency", "save/restore_all"} <= names
    report = inspect_path(str(graph_mode / "graph.pb"))
    assert (report["inputs"], report["outputs"]) == ([X], [Y])


def test_a_traced_function_keeps_variables_as_resource_placeholders_and_lists_functions(tmp_path):
    scale = tf.Variable(2.0)
    inner = tf.function(lambda x: x * scale)
    outer = tf.function(lambda x: inner(x) + 1.0)
    graph_def = outer.get_concrete_function(tf.TensorSpec([None], tf.float32)).graph.as_graph_def()
    tf.io.write_graph(graph_def, str(tmp_path), "traced.pb", as_text=False)
    report = inspect_path(str(tmp_path / "traced.pb"))
    assert report["frozen"] is False
    assert {v["op"] for v in report["variable_ops"] if v["function"] is None} == {"Placeholder"}
    library = sorted(f.signature.name for f in graph_def.library.function)
    assert [f["name"] for f in report["functions"]] == library
    assert report["functions"] and all(f["node_count"] > 0 for f in report["functions"])


def test_a_meta_graph_takes_inputs_and_outputs_from_its_collections(graph_mode):
    report = inspect_path(str(graph_mode / "model.meta"))
    assert report["kind"] == "meta_graph"
    assert (report["inputs"], report["outputs"]) == ([X], [Y])
    assert (report["inputs_source"], report["outputs_source"]) == ("collections", "collections")


def test_a_meta_graph_without_those_collections_falls_back_to_the_graph(graph_mode):
    report = inspect_path(str(graph_mode / "plain.meta"))
    assert (report["inputs"], report["outputs"]) == ([X], [Y])
    assert (report["inputs_source"], report["outputs_source"]) == ("placeholders", "sinks")


def test_a_meta_graph_prefers_its_signature_def(graph_mode, tmp_path):
    meta_graph = tf.compat.v1.MetaGraphDef()
    meta_graph.ParseFromString((graph_mode / "plain.meta").read_bytes())
    signature = meta_graph.signature_def["serving_default"]
    signature.method_name = "tensorflow/serving/predict"
    signature.inputs["features"].name = "x:0"
    signature.outputs["scores"].name = "y:0"
    (tmp_path / "signed.meta").write_bytes(meta_graph.SerializeToString())
    report = inspect_path(str(tmp_path / "signed.meta"))
    assert (report["inputs"], report["outputs"]) == ([X], [Y])
    assert report["inputs_source"] == report["outputs_source"] == "signature_def"
    assert report["meta_graph"]["signatures"] == {
        "serving_default": {
            "method_name": "tensorflow/serving/predict",
            "inputs": {"features": "x:0"},
            "outputs": {"scores": "y:0"},
        }
    }


def test_a_meta_graph_reports_its_saver_def_and_collections(graph_mode):
    meta = inspect_path(str(graph_mode / "model.meta"))["meta_graph"]
    assert meta["saver_def"] == {
        "filename_tensor_name": "save/Const:0",
        "save_tensor_name": "save/control_dependency:0",
        "restore_op_name": "save/restore_all",
        "version": "V2",
    }
    assert meta["collections"] == ["inputs", "outputs", "trainable_variables", "variables"]
    assert meta["tensorflow_version"] == tf.__version__


# --- the command -----------------------------------------------------------------------------


def test_text_output_is_aligned(checkpoints, capsys):
    code, out, _ = inspect_cli(capsys, checkpoints)
    assert code == 0
    lines = out.splitlines()
    assert lines[:2] == [
        f"checkpoint:   {checkpoints}/model.ckpt-4",
        "step:         4 (from global step)",
    ]
    header = next(line for line in lines if line.lstrip().startswith("KEY"))
    kernel = next(line for line in lines if line.lstrip().startswith("dense/kernel "))
    assert kernel.index("[4, 8]") == header.index("SHAPE")
    assert kernel.index("float32") == header.index("DTYPE")
    assert lines[-1] == f"  {checkpoints}/model.ckpt-4  step 4  (inspected)"


@pytest.mark.parametrize(
    "target, keys",
    [("checkpoints", CHECKPOINT_KEYS), ("frozen", GRAPH_KEYS), ("graph_mode", GRAPH_KEYS)],
)
def test_json_output_has_the_documented_keys(target, keys, request, capsys):
    path = request.getfixturevalue(target)
    if target == "graph_mode":
        path = path / "model.meta"
    code, out, _ = inspect_cli(capsys, path, "--json")
    assert code == 0
    report = json.loads(out)
    assert set(report) == keys
    assert report == json.loads(json.dumps(inspect_path(str(path))))


def test_json_from_a_real_subprocess(frozen):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "tfcheckpointer", "inspect", str(frozen), "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["kind"] == "graph_def" and report["frozen"] is True
    assert [o["name"] for o in report["outputs"]] == ["output/y"]


# --- bad input -------------------------------------------------------------------------------


def _missing(tmp_path, frozen, graph_mode):
    return tmp_path / "nowhere" / "model.ckpt-3"


def _random_bytes(tmp_path, frozen, graph_mode):
    (tmp_path / "random.pb").write_bytes(np.random.default_rng(0).bytes(300))
    return tmp_path / "random.pb"


def _truncated(tmp_path, frozen, graph_mode):
    (tmp_path / "truncated.pb").write_bytes(frozen.read_bytes()[:-7])
    return tmp_path / "truncated.pb"


def _empty(tmp_path, frozen, graph_mode):
    (tmp_path / "empty.pb").write_bytes(b"")
    return tmp_path / "empty.pb"


def _parses_but_nonsense(tmp_path, frozen, graph_mode):
    (tmp_path / "nonsense.pb").write_bytes(b"\n\x00")  # one NodeDef with no name and no op
    return tmp_path / "nonsense.pb"


def _dangling_input(tmp_path, frozen, graph_mode):
    (tmp_path / "cut.pbtxt").write_text('node { name: "y" op: "Identity" input: "x" }\n')
    return tmp_path / "cut.pbtxt"


def _binary_pbtxt(tmp_path, frozen, graph_mode):
    (tmp_path / "binary.pbtxt").write_bytes(frozen.read_bytes())
    return tmp_path / "binary.pbtxt"


def _meta_named_pb(tmp_path, frozen, graph_mode):
    shutil.copy(graph_mode / "model.meta", tmp_path / "meta.pb")
    return tmp_path / "meta.pb"


def _pb_named_meta(tmp_path, frozen, graph_mode):
    shutil.copy(frozen, tmp_path / "frozen.meta")
    return tmp_path / "frozen.meta"


def _empty_directory(tmp_path, frozen, graph_mode):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _data_file(tmp_path, frozen, graph_mode):
    return graph_mode / "model.ckpt-7.data-00000-of-00001"


def _graph_as_prefix(tmp_path, frozen, graph_mode):
    shutil.copy(frozen, tmp_path / "model.ckpt-5")
    return tmp_path / "model.ckpt-5"


def _graph_as_index(tmp_path, frozen, graph_mode):
    shutil.copy(frozen, tmp_path / "model.ckpt-5.index")
    return tmp_path / "model.ckpt-5.index"


def _truncated_index(tmp_path, frozen, graph_mode):
    shutil.copy(graph_mode / "model.ckpt-7.data-00000-of-00001", tmp_path)
    index = (graph_mode / "model.ckpt-7.index").read_bytes()
    (tmp_path / "model.ckpt-7.index").write_bytes(index[:40])
    return tmp_path / "model.ckpt-7"


def _index_without_data(tmp_path, frozen, graph_mode):
    shutil.copy(graph_mode / "model.ckpt-7.index", tmp_path)
    return tmp_path / "model.ckpt-7"


BAD_INPUTS = [
    (_missing, "No such file, directory or checkpoint: {path}"),
    (_random_bytes, "{path} is not a GraphDef: Error parsing message"),
    (_truncated, "{path} is not a GraphDef: Error parsing message"),
    (_empty, "{path} is not a GraphDef: the file is empty"),
    (_parses_but_nonsense, "{path} is not a GraphDef: node #0 has an invalid name ''"),
    (_dangling_input, "{path} is not a GraphDef: node 'y' reads 'x', which is not in the file"),
    (_binary_pbtxt, "{path} is not a GraphDef: it is not text"),
    (_meta_named_pb, "{path} is not a GraphDef: it is a MetaGraphDef. HINT: give it the .meta"),
    (_pb_named_meta,
     "{path} is not a MetaGraphDef: it is a frozen GraphDef. HINT: give it the .pb extension."),
    (_empty_directory, "No checkpoint in directory {path}: no `checkpoint` state file"),
    (_data_file, "{path} is one data shard of a checkpoint, not a whole checkpoint. "
                 "HINT: give the checkpoint prefix {prefix}"),
    (_graph_as_prefix, "{path} is a frozen GraphDef, not a checkpoint. HINT: name it *.pb"),
    (_graph_as_index, "{path} is a frozen GraphDef, not a checkpoint."),
    (_truncated_index, "Cannot read checkpoint {path}: "),
    (_index_without_data, "Checkpoint {path} has an index but no .data-* file"),
]


@pytest.mark.parametrize(
    "make, message", BAD_INPUTS, ids=[make.__name__.strip("_") for make, _ in BAD_INPUTS]
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    make, message, tmp_path, frozen, graph_mode, capsys
):
    path = make(tmp_path, frozen, graph_mode)
    before = sorted(os.listdir(tmp_path))
    code, out, err = inspect_cli(capsys, path)
    assert code == 2 and out == ""
    prefix = str(path).split(".data-")[0]
    assert err.startswith("tfcheckpointer: error: " + message.format(path=path, prefix=prefix))
    assert err.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == before


def test_bad_input_raises_one_error_family(tmp_path):
    with pytest.raises(TfCheckpointerError, match="No such file: .*missing.pb"):
        inspect_path(str(tmp_path / "missing.pb"))


def write_stepless_checkpoint(directory: Path) -> None:
    """What TF1's `Saver.save(session, "dir/model")` writes without a `global_step`, and its `.meta`."""
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.compat.v1.get_variable("w", [3, 2])
        tf.identity(tf.matmul(x, w), name="y")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as session:
            session.run(w.initializer)
            saver.save(session, str(directory / "model"))


def test_a_checkpoint_saved_without_a_step_is_found_in_its_directory(tmp_path):
    write_stepless_checkpoint(tmp_path)
    report = inspect_path(str(tmp_path))
    assert report["prefix"] == str(tmp_path / "model")
    assert report["step"] is None
    assert report["checkpoints"] == [{"prefix": str(tmp_path / "model"), "step": None}]


def test_a_meta_without_a_step_freezes_the_checkpoint_beside_it(tmp_path):
    from tfcheckpointer.config import FreezeConfig
    from tfcheckpointer.graph.session_freeze import freeze_meta_graph

    write_stepless_checkpoint(tmp_path)
    done = freeze_meta_graph(
        str(tmp_path / "model.meta"),
        FreezeConfig(output=str(tmp_path / "frozen.pb"), input_names=("x",), output_names=("y",)),
    )
    assert (done.checkpoint, done.step) == (str(tmp_path / "model"), None)
    assert done.frozen.max_abs_diff == 0.0
