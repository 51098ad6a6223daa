"""The export directory's bookkeeping: version numbers, atomic publish, LATEST, the log, pruning."""

from __future__ import annotations

import os

import pytest

from tfcheckpointer.errors import ExportError
from tfcheckpointer.export import versions


def write_files(directory: str, version: int) -> None:
    for name in ("a", "b"):
        with open(os.path.join(directory, name), "w") as f:
            f.write(str(version))


@pytest.mark.parametrize(
    ("kept", "keep", "promoted", "pruned"),
    [
        ([1, 2, 3], None, 3, []),
        ([1, 2, 3], 2, 3, [1]),
        ([1, 2, 3, 4], 2, 1, [2]),
        ([1, 2, 3], 1, None, [1, 2]),
        ([2, 5], 5, 5, []),
    ],
)
def test_versions_to_prune_keeps_the_newest_and_the_promoted(kept, keep, promoted, pruned):
    assert versions.versions_to_prune(kept, keep, promoted) == pruned


def test_versions_are_numbered_from_one_and_never_reused(tmp_path):
    directory = str(tmp_path / "exports")
    assert [versions.publish_version(directory, write_files)[0] for _ in range(3)] == [1, 2, 3]
    versions.move_latest(directory, 3, by="auto", reason="test")
    os.rename(os.path.join(directory, "3"), os.path.join(directory, "elsewhere"))
    # LATEST still names 3, so the next version is 4, not a second 3.
    assert versions.publish_version(directory, write_files) == (4, os.path.join(directory, "4"))
    assert versions.list_versions(directory) == [1, 2, 4]


def test_a_failed_build_publishes_nothing(tmp_path):
    directory = str(tmp_path)

    def fail(temporary: str, version: int) -> None:
        write_files(temporary, version)
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        versions.publish_version(directory, fail)
    assert os.listdir(directory) == []


def test_a_crashed_publish_is_cleaned_up_by_the_next(tmp_path):
    dead = 2**22 + 12345  # above the default pid_max: no live process has it
    os.mkdir(tmp_path / f".1.tmp-{dead}")
    (tmp_path / f".1.tmp-{dead}" / "a").write_text("partial")
    assert versions.publish_version(str(tmp_path), write_files)[0] == 1
    assert sorted(os.listdir(tmp_path)) == ["1"]


def test_every_move_of_latest_is_logged(tmp_path):
    directory = str(tmp_path)
    versions.move_latest(directory, 1, by="auto", reason="first")
    versions.move_latest(directory, 2, by="manual", reason="forced")
    assert (tmp_path / "LATEST").read_text() == "2\n"
    log = versions.read_promotions(directory)
    assert [(e["from"], e["to"], e["by"], e["reason"]) for e in log] == [
        (None, 1, "auto", "first"), (1, 2, "manual", "forced"),
    ]
    assert all(e["time"].endswith("+00:00") for e in log)


def test_a_damaged_latest_is_one_clear_error(tmp_path):
    (tmp_path / "LATEST").write_text("three\n")
    with pytest.raises(ExportError, match=r"LATEST holds 'three', not a version number\. HINT: "):
        versions.read_latest(str(tmp_path))


def test_pruning_never_deletes_the_promoted_version(tmp_path):
    directory = str(tmp_path)
    for _ in range(3):
        versions.publish_version(directory, write_files)
    versions.move_latest(directory, 1, by="manual", reason="roll back")
    assert versions.prune_versions(directory, 2) == []
    versions.publish_version(directory, write_files)
    assert versions.prune_versions(directory, 2) == [2]
    versions.publish_version(directory, write_files)
    assert versions.prune_versions(directory, 2) == [3]
    assert versions.list_versions(directory) == [1, 4, 5]
    assert sorted(os.listdir(directory)) == ["1", "4", "5", "LATEST", "promotions.jsonl"]
