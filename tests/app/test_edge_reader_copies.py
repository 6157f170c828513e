"""The embedded index read by several processes (uvicorn workers): each opens a private copy of the live generation
under <collection>/readers/<pid>-<generation>/, and no copy outlives its reader (or, killed, the next open)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import uuid

import pytest
import qdrant_edge as qe

from app.rag.sparse import document_vector
from app.rag.vector_index import IndexedChunk
from app.rag.vector_index.edge import EdgeCollection, EdgeIndexWriter, EdgeVectorIndex
from app.settings import PROJECT_ROOT

DIMS = 4
COLLECTION = "live"
# A reader in another process: prints its pid and the count it reads, then waits for a line on stdin (or death).
OTHER_READER = (
    "import os, sys\n"
    "from app.rag.vector_index.edge import EdgeVectorIndex\n"
    "reader = EdgeVectorIndex(sys.argv[1], sys.argv[2])\n"
    "print(os.getpid(), reader.count(), flush=True)\n"
    "sys.stdin.readline()\n"
    "reader.close()\n"
)


def chunk(text: str, dense: list[float]) -> IndexedChunk:
    return IndexedChunk(id=str(uuid.uuid5(uuid.NAMESPACE_URL, text)), dense=dense, sparse=document_vector(text),
                        payload={"text": text, "locale": "en", "source_path": "a.md", "content_hash": f"h-{text}",
                                 "url": "/docs/a", "page_url": "/docs/a", "chapter": "a"})


def publish(writer: EdgeIndexWriter, texts: list[str]) -> str:
    generation = writer.begin(full_rebuild=False, source_identity="test", embedding_model="m")
    generation.upsert([chunk(text, [1, 0, 0, i / 10]) for i, text in enumerate(texts)])
    generation.publish()
    return generation.name


def copies(tmp_path) -> list[str]:
    folder = tmp_path / COLLECTION / "readers"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def writer(tmp_path) -> EdgeIndexWriter:
    return EdgeIndexWriter(tmp_path, COLLECTION, dimensions=DIMS)


def start_other_reader(tmp_path) -> tuple[subprocess.Popen, int, int]:
    """Another process reading the collection: (process, its pid, the count it read)."""
    process = subprocess.Popen([sys.executable, "-c", OTHER_READER, str(tmp_path), COLLECTION], cwd=PROJECT_ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"the other reader failed: {process.communicate(timeout=30)[1][-2000:]}")
    pid, count = map(int, line.split())
    return process, pid, count


def test_two_processes_read_the_live_generation_at_once(tmp_path, writer):
    generation = publish(writer, ["kalman filter", "zero moment point"])
    reader = EdgeVectorIndex(tmp_path, COLLECTION)
    try:
        assert reader.count() == 2
        other, other_pid, other_count = start_other_reader(tmp_path)  # while this process has the generation open
        assert other_count == 2
        assert copies(tmp_path) == sorted([f"{os.getpid()}-{generation}", f"{other_pid}-{generation}"])
        other.communicate("\n", timeout=30)
        assert other.returncode == 0
        assert copies(tmp_path) == [f"{os.getpid()}-{generation}"]  # the other one's copy went with its close()
    finally:
        reader.close()
    assert copies(tmp_path) == []


def test_a_switch_replaces_the_copy_and_the_generation_itself_is_never_opened(tmp_path, writer):
    publish(writer, ["kalman filter"])
    reader = EdgeVectorIndex(tmp_path, COLLECTION, retire_after_s=0)
    assert reader.count() == 1
    # The writer copies the live generation while this reader has its copy open; then it publishes the next one.
    second = publish(writer, ["zero moment point"])
    assert reader.count() == 2 and reader.generation == second
    assert copies(tmp_path) == [f"{os.getpid()}-{second}"]
    # Not opened in place: another process can open the published generation folder itself.
    shard = qe.EdgeShard.load(str(EdgeCollection(tmp_path, COLLECTION).generation_dir(second) / "shard"))
    assert shard.count(qe.CountRequest(exact=True)) == 2
    shard.close()
    reader.close()
    assert copies(tmp_path) == []


def test_the_retired_copy_is_removed_on_a_later_search_once_its_time_is_up(tmp_path, writer):
    publish(writer, ["kalman filter"])
    reader = EdgeVectorIndex(tmp_path, COLLECTION, retire_after_s=3600)
    reader.count()
    second = publish(writer, ["zero moment point"])
    reader.count()
    assert len(copies(tmp_path)) == 2  # the first generation's copy waits for searches that may still use it
    reader._retire_after_s = 0
    reader.count()
    assert copies(tmp_path) == [f"{os.getpid()}-{second}"]
    reader.close()


def test_copies_of_killed_readers_and_of_this_pid_are_removed_on_the_next_open(tmp_path, writer):
    generation = publish(writer, ["kalman filter"])
    killed, killed_pid, _ = start_other_reader(tmp_path)
    survivor, survivor_pid, _ = start_other_reader(tmp_path)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    killed.stdout.close()
    killed.stderr.close()
    leftover_of_this_pid = tmp_path / COLLECTION / "readers" / f"{os.getpid()}-g19700101T000000000000Z"
    leftover_of_this_pid.mkdir()  # an earlier process with this pid (a restarted container) died with its copy
    assert f"{killed_pid}-{generation}" in copies(tmp_path)
    reader = EdgeVectorIndex(tmp_path, COLLECTION)
    try:
        assert reader.count() == 1
        assert copies(tmp_path) == sorted([f"{os.getpid()}-{generation}", f"{survivor_pid}-{generation}"])
    finally:
        reader.close()
        survivor.communicate("\n", timeout=30)
    assert copies(tmp_path) == []


def file_hashes(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_readers_and_the_writer_leave_a_published_generation_as_it_was(tmp_path, writer):
    first = publish(writer, ["kalman filter", "zero moment point"])
    folder = EdgeCollection(tmp_path, COLLECTION).generation_dir(first)
    published = file_hashes(folder)
    reader = EdgeVectorIndex(tmp_path, COLLECTION)
    other, _, _ = start_other_reader(tmp_path)
    assert reader.count() == 2
    publish(writer, ["ros publisher subscriber"])  # copies the first generation while both readers hold theirs
    assert reader.count() == 3
    other.communicate("\n", timeout=30)
    reader.close()
    assert file_hashes(folder) == published
