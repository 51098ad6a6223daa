"""`tfcheckpointer convert`: exact round trips between graph formats, atomic writes, refusals."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from tests.helpers import write_frozen_graph, write_graph_mode_files
from tfcheckpointer.cli import main
from tfcheckpointer.graph.convert import convert
from tfcheckpointer.graph.files import read_graph_def
from tfcheckpointer.graph.files import read_meta_graph_def


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """frozen.pb (variables folded), graph.pb (variables kept), model.meta, model.ckpt-7."""
    directory = tmp_path_factory.mktemp("sources")
    write_frozen_graph(directory)
    write_graph_mode_files(directory)
    return directory


def convert_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["convert", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["frozen.pb", "graph.pb"])
def test_pb_to_pbtxt_and_back_is_exact(name, sources, tmp_path):
    convert(str(sources / name), str(tmp_path / "graph.pbtxt"))
    convert(str(tmp_path / "graph.pbtxt"), str(tmp_path / "graph.pb"))
    original = read_graph_def(str(sources / name))
    assert read_graph_def(str(tmp_path / "graph.pbtxt")) == original
    assert read_graph_def(str(tmp_path / "graph.pb")) == original


@pytest.mark.parametrize("suffix", [".pb", ".pbtxt"])
def test_a_meta_graph_gives_its_graph_def(suffix, sources, tmp_path):
    convert(str(sources / "model.meta"), str(tmp_path / f"graph{suffix}"))
    meta_graph, _ = read_meta_graph_def(str(sources / "model.meta"))
    assert read_graph_def(str(tmp_path / f"graph{suffix}")) == meta_graph.graph_def


def test_binary_output_is_byte_for_byte_stable(sources, tmp_path):
    convert(str(sources / "graph.pb"), str(tmp_path / "a.pbtxt"))
    convert(str(tmp_path / "a.pbtxt"), str(tmp_path / "b.pb"))
    convert(str(tmp_path / "b.pb"), str(tmp_path / "c.pb"))
    assert (tmp_path / "b.pb").read_bytes() == (tmp_path / "c.pb").read_bytes()


def test_the_command_says_what_it_wrote(sources, tmp_path, capsys):
    code, out, err = convert_cli(capsys, sources / "frozen.pb", tmp_path / "frozen.pbtxt")
    nodes = len(read_graph_def(str(sources / "frozen.pb")).node)
    size = os.path.getsize(tmp_path / "frozen.pbtxt")
    assert code == 0 and err == ""
    assert out == (
        f"Wrote {tmp_path}/frozen.pbtxt (text GraphDef, {nodes} nodes, {size:,} bytes) "
        f"from {sources}/frozen.pb (binary GraphDef)\n"
    )


def test_an_existing_output_is_kept_without_force(sources, tmp_path, capsys):
    (tmp_path / "out.pbtxt").write_text("keep me")
    code, _, err = convert_cli(capsys, sources / "frozen.pb", tmp_path / "out.pbtxt")
    assert code == 2
    assert f"{tmp_path}/out.pbtxt exists; not overwritten. HINT: pass --force" in err
    assert (tmp_path / "out.pbtxt").read_text() == "keep me"


def test_force_replaces_an_existing_output(sources, tmp_path, capsys):
    (tmp_path / "out.pbtxt").write_text("replace me")
    code, _, _ = convert_cli(capsys, sources / "frozen.pb", tmp_path / "out.pbtxt", "--force")
    assert code == 0
    assert read_graph_def(str(tmp_path / "out.pbtxt")) == read_graph_def(str(sources / "frozen.pb"))


def test_a_failed_write_leaves_neither_output_nor_temporary_file(
    sources, tmp_path, monkeypatch, capsys
):
    def refuse(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.io.gfile, "rename", refuse)
    code, _, err = convert_cli(capsys, sources / "frozen.pb", tmp_path / "out.pb")
    assert code == 2
    assert err == f"tfcheckpointer: error: Cannot write {tmp_path}/out.pb: disk full\n"
    assert os.listdir(tmp_path) == []


def _garbage_in(sources, tmp_path):
    (tmp_path / "garbage.pb").write_bytes(b"\x00\xff" * 50)
    return tmp_path / "garbage.pb", tmp_path / "out.pbtxt"


REFUSALS = {
    "same_file": (
        lambda sources, tmp_path: (sources / "frozen.pb", sources / "frozen.pb"),
        "Input and output are the same file: {source}",
    ),
    "unknown_input_extension": (
        lambda sources, tmp_path: (
            shutil.copy(sources / "frozen.pb", tmp_path / "model.h5"), tmp_path / "out.pb"
        ),
        "Cannot read {source}: unknown extension '.h5'; supported inputs are "
        ".pb (binary GraphDef), .pbtxt (text GraphDef), .meta (MetaGraphDef).",
    ),
    "meta_output": (
        lambda sources, tmp_path: (sources / "model.meta", tmp_path / "out.meta"),
        "Cannot write {destination}: unknown extension '.meta'; supported outputs are "
        ".pb (binary GraphDef), .pbtxt (text GraphDef).",
    ),
    "checkpoint_prefix": (
        lambda sources, tmp_path: (sources / "model.ckpt-7", tmp_path / "out.pb"),
        "{source} is a checkpoint; convert reads graph files (.pb, .pbtxt, .meta). "
        "HINT: use `tfcheckpointer inspect {source}`",
    ),
    "checkpoint_index": (
        lambda sources, tmp_path: (sources / "model.ckpt-7.index", tmp_path / "out.pb"),
        "{source} is a checkpoint; convert reads graph files",
    ),
    "checkpoint_directory": (
        lambda sources, tmp_path: (sources, tmp_path / "out.pb"),
        "{source} is a directory; convert reads graph files",
    ),
    "missing_input": (
        lambda sources, tmp_path: (tmp_path / "missing.pb", tmp_path / "out.pbtxt"),
        "No such file: {source}",
    ),
    "missing_output_directory": (
        lambda sources, tmp_path: (sources / "frozen.pb", tmp_path / "no" / "out.pbtxt"),
        "Cannot write {destination}: directory {tmp_path}/no does not exist.",
    ),
    "garbage_input": (_garbage_in, "{source} is not a GraphDef: "),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_are_one_line_exit_2_and_write_nothing(case, sources, tmp_path, capsys):
    make, message = REFUSALS[case]
    (tmp_path / "out").mkdir()
    source, destination = make(sources, tmp_path / "out")
    before = sorted(os.listdir(sources)), sorted(os.listdir(tmp_path / "out"))
    code, out, err = convert_cli(capsys, source, destination)
    assert code == 2 and out == ""
    expected = message.format(source=source, destination=destination, tmp_path=tmp_path / "out")
    assert err.startswith(f"tfcheckpointer: error: {expected}")
    assert err.count("\n") == 1
    assert (sorted(os.listdir(sources)), sorted(os.listdir(tmp_path / "out"))) == before
