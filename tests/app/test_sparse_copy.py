"""Index copies keep their holes: Qdrant Edge preallocates sparse files (160 MiB apparent for an empty shard), and a
plain copy filled them, so a test run wrote 19 GB and CI ran out of disk."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from app.rag.vector_index.edge import EdgeIndexWriter, EdgeVectorIndex
from app.rag.vector_index.sparse_copy import copy_index_tree, copy_sparse_file
from tests.app.test_edge_reader_copies import COLLECTION, DIMS, publish

MIB = 1 << 20


def on_disk(path: Path) -> int:
    """Bytes allocated (st_blocks) under path."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_blocks * 512 for p in files)


def apparent(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def holey_file(path: Path) -> bytes:
    """8 MiB with data at its start, in its middle and at its end, holes between."""
    with open(path, "wb") as out:
        out.write(b"head" * 1024)
        out.seek(4 * MIB)
        out.write(b"middle" * 1000)
        out.seek(8 * MIB - 3)
        out.write(b"end")
    return path.read_bytes()


def skip_unless_holes_are_kept(folder: Path) -> None:
    probe = folder / "hole-probe"
    holey_file(probe)
    kept = on_disk(probe) < 2 * MIB
    probe.unlink()
    if not kept:
        pytest.skip("this file system does not keep holes")


def test_a_copied_file_has_the_same_bytes_and_keeps_its_holes(tmp_path):
    skip_unless_holes_are_kept(tmp_path)
    content = holey_file(tmp_path / "source")
    copy_sparse_file(tmp_path / "source", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == content
    assert on_disk(tmp_path / "copy") <= on_disk(tmp_path / "source") + 64 * 1024
    assert (tmp_path / "copy").stat().st_mode == (tmp_path / "source").stat().st_mode


def test_without_copy_file_range_the_bytes_are_copied_by_hand(tmp_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    content = holey_file(tmp_path / "source")
    copy_sparse_file(tmp_path / "source", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == content


def test_an_empty_file_and_a_file_without_holes_copy_exactly(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "full").write_bytes(os.urandom(3 * MIB + 17))
    copy_index_tree(tmp_path, tmp_path.parent / f"{tmp_path.name}-copy")
    copied = tmp_path.parent / f"{tmp_path.name}-copy"
    assert (copied / "empty").read_bytes() == b""
    assert (copied / "full").read_bytes() == (tmp_path / "full").read_bytes()


def test_generations_and_reader_copies_cost_their_data_not_their_preallocation(tmp_path):
    skip_unless_holes_are_kept(tmp_path)
    writer = EdgeIndexWriter(tmp_path, COLLECTION, dimensions=DIMS)
    publish(writer, ["first", "second"])
    publish(writer, ["third"])  # the second generation is a copy of the first, changed
    reader = EdgeVectorIndex(tmp_path, COLLECTION)
    try:
        assert reader.count() == 3
        collection = tmp_path / COLLECTION
        assert apparent(collection) > 300 * MIB  # two generations and a reader copy, as Qdrant sizes them
        assert on_disk(collection / "readers") < 8 * MIB
        assert on_disk(collection) < 24 * MIB
    finally:
        reader.close()
