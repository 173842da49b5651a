from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from harness.matching import exactly
from oasis_ops import storage as storage_module
from oasis_ops.errors import OasisInputError
from oasis_ops.storage import Storage


@pytest.fixture
def storage(tmp_path) -> Storage:
    root = tmp_path / "root"
    (root / "exposure").mkdir(parents=True)
    (root / "exposure" / "loc.csv").write_text("LocNumber\n1\n")
    return Storage(str(root))


def test_relative_absolute_and_uri_paths_inside_the_root_resolve(storage):
    expected = storage.root / "exposure" / "loc.csv"
    assert storage.resolve("exposure/loc.csv", "location_file") == expected
    assert storage.resolve("./exposure//loc.csv", "location_file") == expected
    assert storage.resolve(f"{storage.root.path}/exposure/loc.csv", "location_file") == expected
    assert storage.resolve(f"{storage.uri}/exposure/loc.csv", "location_file") == expected


@pytest.mark.parametrize(
    "path",
    ["../outside.csv", "exposure/../../outside.csv", "/etc/passwd", "file:///etc/passwd", "s3://bucket/loc.csv"],
)
def test_paths_leaving_the_root_are_refused_with_the_field_name(storage, path):
    with pytest.raises(OasisInputError) as err:
        storage.resolve(path, "accounts_file")
    assert str(err.value) == f"accounts_file: {path!r} is outside the storage root {storage.uri}; give a path relative to it"


def test_sibling_folder_with_the_roots_name_as_prefix_is_outside(storage, tmp_path):
    (tmp_path / "root2").mkdir()
    path = str(tmp_path / "root2" / "x.csv")
    reason = f"location_file: {path!r} is outside the storage root {storage.uri}; give a path relative to it"
    with pytest.raises(OasisInputError, match=exactly(reason)):
        storage.resolve(path, "location_file")


def test_a_symlink_out_of_the_root_is_refused(storage, tmp_path):
    (tmp_path / "secret.csv").write_text("x")
    os.symlink(tmp_path / "secret.csv", Path(storage.root.path) / "exposure" / "link.csv")
    with pytest.raises(OasisInputError, match=exactly(f"location_file: 'exposure/link.csv' links outside the storage root {storage.uri}")):
        storage.resolve("exposure/link.csv", "location_file")


def test_the_root_itself_is_not_a_file(storage):
    with pytest.raises(OasisInputError, match=exactly("location_file: '.' names the storage root itself, not a file in it")):
        storage.resolve(".", "location_file")


def test_publish_replaces_the_destination_only_when_complete(storage, tmp_path):
    dest = storage.analysis("a1").output
    first = tmp_path / "first"
    first.mkdir()
    (first / "gul.csv").write_text("v1")
    storage.publish(first, dest)
    assert (dest / "gul.csv").read_text() == "v1"

    second = tmp_path / "second"
    (second / "sub").mkdir(parents=True)
    (second / "sub" / "il.csv").write_text("v2")
    storage.publish(second, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["sub"]
    assert (dest / "sub" / "il.csv").read_text() == "v2"
    # No staging or retired folders are left next to the destination.
    assert sorted(p.name for p in dest.parent.iterdir()) == ["output"]


def test_publish_keeping_the_local_folder_leaves_both_whole(storage, tmp_path):
    """v1 and v2 publish the input files and go on reading their local copy: removing that copy (the
    scratch folder's end) or adding files to it must not touch what was published."""
    dest = storage.analysis("a1").input
    local = tmp_path / "input"
    (local / "RI_1").mkdir(parents=True)
    (local / "items.csv").write_text("item_id\n1\n")
    (local / "RI_1" / "ri_info.csv").write_text("x")
    storage.publish(local, dest, keep=True)
    assert (local / "items.csv").read_text() == "item_id\n1\n"
    (local / "run_only.bin").write_text("scratch")
    shutil.rmtree(local)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["RI_1", "RI_1/ri_info.csv", "items.csv"]
    assert (dest / "items.csv").read_text() == "item_id\n1\n"


def test_a_failed_publish_keeps_the_earlier_outputs(storage, tmp_path, monkeypatch):
    dest = storage.analysis("a1").output
    good = tmp_path / "good"
    good.mkdir()
    (good / "gul.csv").write_text("old")
    storage.publish(good, dest)

    new = tmp_path / "new"
    new.mkdir()
    (new / "gul.csv").write_text("new")
    original_move = storage_module._move

    def failing_move(source, target):
        if ".partial-" in source.name:
            raise OSError("disk on fire")
        original_move(source, target)

    monkeypatch.setattr(storage_module, "_move", failing_move)
    with pytest.raises(OSError, match=exactly("disk on fire")):
        storage.publish(new, dest)
    assert (dest / "gul.csv").read_text() == "old"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["output"]


def test_object_storage_root_round_trip(tmp_path):
    """A non-local root (fsspec's in-memory store stands in for s3://) fetches and publishes by copying."""
    from airflow.sdk.io import attach
    from fsspec.implementations.memory import MemoryFileSystem

    attach("memory", fs=MemoryFileSystem())
    storage = Storage("memory://bucket/oasis")
    assert not storage.is_local
    (storage.root / "exposure").mkdir(parents=True, exist_ok=True)
    (storage.root / "exposure" / "loc.csv").write_text("LocNumber\n1\n")
    source = storage.resolve("memory://bucket/oasis/exposure/loc.csv", "location_file")
    local = storage.fetch(source, tmp_path / "loc.csv")
    assert local.read_text() == "LocNumber\n1\n"
    reason = "location_file: 'memory://bucket/other/loc.csv' is outside the storage root memory://bucket/oasis; give a path relative to it"
    with pytest.raises(OasisInputError, match=exactly(reason)):
        storage.resolve("memory://bucket/other/loc.csv", "location_file")

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "x.csv").write_text("1")
    dest = storage.analysis("a").output
    storage.publish(out, dest)
    assert (dest / "sub" / "x.csv").read_text() == "1"
    with storage.scratch("a") as work:
        assert work.is_dir()
    assert not work.exists()


def test_local_scratch_lives_inside_the_root(storage):
    with storage.scratch("run") as work:
        assert work.parent == Path(storage.root.path) / ".work"
    assert not work.exists()
