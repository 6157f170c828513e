"""Embedded adapter: Qdrant Edge (in-process), one folder per index generation.

Layout under INDEX_DIR/<collection>/:
    CURRENT                      JSON pointer to the live generation (replaced atomically)
    generations/<name>/shard/    the EdgeShard folder
    generations/<name>/manifest.json   chunk id -> content hash, source, model

    readers/<pid>-<generation>/  a reader process's private copy of a generation's shard

An EdgeShard folder can be opened by one process at a time, so nobody opens a published generation in place.
The writer copies the live generation (or starts empty for a full rebuild), changes the copy, and moves the
pointer. Each reading process (every uvicorn worker) copies the live generation into readers/ and opens its
copy; it notices the pointer move on its next search, copies and opens the new generation, and removes its
old copy. So after publish() closes it, nobody opens a generation folder again: its files never change, and the
writer and the readers copy it while others read their own copies (Edge's lock is a flock on the opener's wal/
folder, which a plain copy does not take).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from app.rag.vector_index.base import (
    DENSE,
    KEYWORD_FIELDS,
    RECORD_FIELDS,
    SPARSE,
    GenerationGone,
    IndexedChunk,
    IndexedRecord,
    IndexState,
    IndexUnavailable,
    SearchHit,
    SearchRequest,
    payload_record,
    single_generation,
)
from app.rag.vector_index.sparse_copy import copy_index_tree

log = logging.getLogger(__name__)
POINTER = "CURRENT"
READERS = "readers"
MAX_CHAPTERS = 1000


class _OpenShards:
    """This process's private copies of generations, open for reading, shared by its readers (counted): each is
    copied and opened on first use and closed and removed when the last reader lets go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shards: dict[Path, list[Any]] = {}

    def acquire(self, collection: EdgeCollection, generation: str) -> tuple[qe.EdgeShard, Path]:
        copy = collection.reader_copy_dir(generation)
        with self._lock:
            entry = self._shards.get(copy)
            if entry is None:
                self._remove_leftover_copies(collection)
                entry = self._shards[copy] = [_open_private_copy(collection.generation_dir(generation) / "shard",
                                                                 copy), 0]
            entry[1] += 1
            return entry[0], copy

    def release(self, copy: Path) -> None:
        with self._lock:
            entry = self._shards.get(copy)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] <= 0:
                entry[0].close()
                del self._shards[copy]
                shutil.rmtree(copy, ignore_errors=True)

    def _remove_leftover_copies(self, collection: EdgeCollection) -> None:
        """Copies of processes that are gone (killed before closing), and this pid's own that no reader holds
        (left by an earlier process that had the same pid: a restarted container)."""
        for folder in collection.reader_copies():
            pid = _copy_pid(folder)
            if (pid == os.getpid() and folder not in self._shards) or (pid != os.getpid() and not _pid_alive(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _open_private_copy(shard_dir: Path, copy: Path) -> qe.EdgeShard:
    shutil.rmtree(copy, ignore_errors=True)
    try:
        started = time.perf_counter()
        copy_index_tree(shard_dir, copy)
        shard = qe.EdgeShard.load(str(copy))
    except BaseException:
        shutil.rmtree(copy, ignore_errors=True)
        raise
    log.info("opened a private copy of %s in %.0f ms", shard_dir.parent.name, (time.perf_counter() - started) * 1000)
    return shard


def _copy_pid(folder: Path) -> int | None:
    pid, _, _ = folder.name.partition("-")
    return int(pid) if pid.isdigit() else None


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


OPEN_SHARDS = _OpenShards()


def _config(dimensions: int) -> qe.EdgeConfig:
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dimensions, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )


def _filter(request: SearchRequest) -> qe.Filter | None:
    conditions = request.conditions()
    if not conditions:
        return None
    return qe.Filter(must=[qe.FieldCondition(key=key, match=qe.MatchValue(value)) for key, value in conditions])


def _ensure_keyword_indexes(shard: qe.EdgeShard) -> None:
    """Idempotent: a generation copied from an older one gets the indexes added since."""
    for field in KEYWORD_FIELDS:
        shard.update(qe.UpdateOperation.create_field_index(field, qe.PayloadSchemaType.Keyword))


def edge_chapters(shard: qe.EdgeShard) -> set[str]:
    response = shard.facet(qe.FacetRequest(key="chapter", limit=MAX_CHAPTERS, exact=True))
    return {str(hit.value) for hit in response.hits if hit.value}


def _sparse(vector: Any) -> qe.SparseVector:
    return qe.SparseVector(indices=list(vector.indices), values=list(vector.values))


def edge_query(shard: qe.EdgeShard, request: SearchRequest, generation: str | None = None) -> list[SearchHit]:
    flt = _filter(request)
    payload = request.with_payload
    kind = request.search_kind()
    if kind is None:
        return []
    dense_query = qe.Query.Nearest(list(request.dense), using=DENSE) if request.dense is not None else None
    if kind == "dense":
        query = qe.QueryRequest(limit=request.limit, query=dense_query, filter=flt, with_payload=payload)
    elif kind == "sparse":
        query = qe.QueryRequest(limit=request.limit, query=qe.Query.Nearest(_sparse(request.sparse), using=SPARSE),
                                filter=flt, with_payload=payload)
    else:
        query = qe.QueryRequest(
            limit=request.limit,
            prefetches=[
                qe.Prefetch(limit=request.prefetch_limit, query=dense_query, filter=flt),
                qe.Prefetch(limit=request.prefetch_limit, query=qe.Query.Nearest(_sparse(request.sparse), using=SPARSE),
                            filter=flt),
            ],
            query=qe.Fusion.Rrf(k=request.rrf_k, weights=[request.dense_weight, request.sparse_weight]),
            with_payload=payload,
        )
    return [SearchHit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {}) if payload else {},
                      generation=generation) for p in shard.query(query)]


def edge_payloads(shard: qe.EdgeShard, hits: Sequence[SearchHit]) -> list[SearchHit]:
    """`hits` with their payloads read from `shard` (the one they were found in)."""
    records = {str(r.id): r.payload for r in shard.retrieve([hit.id for hit in hits], True, False)}
    return [replace(hit, payload=dict(records.get(hit.id) or {})) for hit in hits]


def _scroll_records(shard: qe.EdgeShard) -> dict[str, IndexedRecord]:
    records: dict[str, IndexedRecord] = {}
    offset = None
    while True:
        points, offset = shard.scroll(
            qe.ScrollRequest(offset=offset, limit=1000, with_payload=RECORD_FIELDS, with_vector=False)
        )
        for point in points:
            records[str(point.id)] = payload_record(dict(point.payload or {}))
        if offset is None:
            return records


class EdgeCollection:
    """The folder of one collection: its pointer and generations."""

    def __init__(self, index_dir: Path, collection: str) -> None:
        self.root = Path(index_dir) / collection
        self.collection = collection

    @property
    def pointer_path(self) -> Path:
        return self.root / POINTER

    def generation_dir(self, name: str) -> Path:
        return self.root / "generations" / name

    def reader_copy_dir(self, generation: str) -> Path:
        """This process's private copy of `generation`, which it reads."""
        return self.root / READERS / f"{os.getpid()}-{generation}"

    def reader_copies(self) -> list[Path]:
        folder = self.root / READERS
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def read_pointer(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.pointer_path.read_text())
        except FileNotFoundError:
            return None

    def write_pointer(self, generation: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{POINTER}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({
            "generation": generation,
            "published_at": datetime.now(UTC).isoformat(),
        }))
        os.replace(tmp, self.pointer_path)

    def read_manifest(self, generation: str) -> dict[str, Any]:
        return json.loads((self.generation_dir(generation) / "manifest.json").read_text())

    def generations(self) -> list[str]:
        folder = self.root / "generations"
        if not folder.exists():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "manifest.json").exists())


class EdgeVectorIndex:
    """Read side: follows the pointer; opens (a private copy of) each new generation once, on the next search.

    `retire_after_s`: searches already running may still use the generation switched away from, so its copy is
    closed and removed this long after the switch (on a later search), or at close()."""

    def __init__(self, index_dir: Path, collection: str, *, retire_after_s: float = 10) -> None:
        self._collection = EdgeCollection(index_dir, collection)
        self._retire_after_s = retire_after_s
        self._lock = threading.Lock()
        self._shard: qe.EdgeShard | None = None
        self._generation: str | None = None
        self._pointer_stamp: tuple[int, int] | None = None
        self._shard_path: Path | None = None
        # Replaced generations, open a little longer for searches still running: (retired at, folder, name, shard).
        self._retired: list[tuple[float, Path, str, qe.EdgeShard]] = []

    @property
    def generation(self) -> str | None:
        return self._generation

    def _current_shard(self) -> qe.EdgeShard:
        try:
            stat = self._collection.pointer_path.stat()
        except FileNotFoundError:
            raise IndexUnavailable(
                f"no index for collection {self._collection.collection!r} yet: run the ingest-textbook flow"
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp == self._pointer_stamp and self._shard is not None:
            if self._retired:
                with self._lock:
                    self._close_retired(older_than_s=self._retire_after_s)
            return self._shard
        with self._lock:
            if stamp != self._pointer_stamp or self._shard is None:
                self._switch(stamp)
            assert self._shard is not None
            return self._shard

    def _switch(self, stamp: tuple[int, int]) -> None:
        pointer = self._collection.read_pointer()
        if pointer is None:
            raise IndexUnavailable(f"collection {self._collection.collection!r} has no live generation")
        generation = pointer["generation"]
        if generation != self._generation or self._shard is None:
            try:
                shard, shard_dir = OPEN_SHARDS.acquire(self._collection, generation)
            except Exception as exc:
                raise IndexUnavailable(f"cannot open index generation {generation}: {exc}") from exc
            if self._shard_path is not None and self._generation is not None and self._shard is not None:
                # Searches already running may still hold the old shard: release it a little later.
                self._retired.append((time.monotonic(), self._shard_path, self._generation, self._shard))
            self._shard, self._shard_path, self._generation = shard, shard_dir, generation
            log.info("index generation %s is live", generation)
        self._pointer_stamp = stamp
        self._close_retired(older_than_s=self._retire_after_s)

    def _close_retired(self, older_than_s: float) -> None:
        now = time.monotonic()
        keep = []
        for retired in self._retired:
            if now - retired[0] >= older_than_s:
                OPEN_SHARDS.release(retired[1])
            else:
                keep.append(retired)
        self._retired = keep

    def search(self, request: SearchRequest) -> list[SearchHit]:
        shard = self._current_shard()
        return edge_query(shard, request, self._generation_of(shard))

    def _generation_of(self, shard: qe.EdgeShard) -> str | None:
        with self._lock:
            if shard is self._shard:
                return self._generation
            return next((name for _, _, name, retired in self._retired if retired is shard), None)

    def payloads(self, hits: Sequence[SearchHit]) -> list[SearchHit]:
        if not hits:
            return []
        return edge_payloads(self._open_generation(single_generation(hits)), hits)

    def _open_generation(self, generation: str | None) -> qe.EdgeShard:
        with self._lock:
            if generation is not None and generation == self._generation and self._shard is not None:
                return self._shard
            shard = next((retired for _, _, name, retired in self._retired if name == generation), None)
        if shard is None:
            raise GenerationGone(f"index generation {generation} is no longer open")
        return shard

    def count(self) -> int:
        return self._current_shard().count(qe.CountRequest(exact=True))

    def chapters(self) -> set[str]:
        return edge_chapters(self._current_shard())

    def close(self) -> None:
        with self._lock:
            if self._shard_path is not None:
                OPEN_SHARDS.release(self._shard_path)
            self._close_retired(older_than_s=0)
            self._shard, self._shard_path, self._generation, self._pointer_stamp = None, None, None, None


class EdgeGenerationWriter:
    def __init__(self, collection: EdgeCollection, name: str, shard: qe.EdgeShard, manifest: dict[str, Any],
                 keep: int) -> None:
        self.name = name
        self._collection = collection
        self._shard: qe.EdgeShard | None = shard
        self._manifest = manifest
        self._keep = keep

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise RuntimeError(f"generation {self.name} is already published or discarded")
        return self._shard

    def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        points = [
            qe.Point(id=c.id, vector={DENSE: list(c.dense), SPARSE: _sparse(c.sparse)}, payload=c.payload)
            for c in chunks
        ]
        if points:
            self.shard.update(qe.UpdateOperation.upsert_points(points))

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self.shard.update(qe.UpdateOperation.delete_points(list(ids)))

    def records(self) -> dict[str, IndexedRecord]:
        return _scroll_records(self.shard)

    def search(self, request: SearchRequest) -> list[SearchHit]:
        return edge_query(self.shard, request)

    def publish(self) -> None:
        shard = self.shard
        records = _scroll_records(shard)
        shard.optimize()
        shard.flush()
        shard.close()
        self._shard = None
        manifest = {
            **self._manifest,
            "points": len(records),
            "records": {k: [r.content_hash, r.source_path, r.locale] for k, r in records.items()},
        }
        folder = self._collection.generation_dir(self.name)
        tmp = folder / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, folder / "manifest.json")
        self._collection.write_pointer(self.name)
        self._prune()

    def _prune(self) -> None:
        live = self.name
        older = [g for g in self._collection.generations() if g != live]
        for name in older[: max(0, len(older) - (self._keep - 1))]:
            shutil.rmtree(self._collection.generation_dir(name), ignore_errors=True)
        for leftover in (self._collection.root / "generations").iterdir():
            if not (leftover / "manifest.json").exists() and leftover.name != live and _is_stale(leftover):
                shutil.rmtree(leftover, ignore_errors=True)

    def discard(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None
        shutil.rmtree(self._collection.generation_dir(self.name), ignore_errors=True)


def _is_stale(folder: Path, age_s: float = 3600) -> bool:
    """An unpublished generation left by a crashed run (older than an hour)."""
    try:
        return time.time() - folder.stat().st_mtime > age_s
    except FileNotFoundError:
        return False


class EdgeIndexWriter:
    def __init__(self, index_dir: Path, collection: str, *, dimensions: int, keep: int = 2) -> None:
        self._collection = EdgeCollection(index_dir, collection)
        self._dimensions = dimensions
        self._keep = keep

    def state(self) -> IndexState:
        pointer = self._collection.read_pointer()
        if pointer is None:
            return IndexState(generation=None, source_identity=None, embedding_model=None, records={})
        manifest = self._collection.read_manifest(pointer["generation"])
        records = {
            k: IndexedRecord(content_hash=v[0], source_path=v[1], locale=v[2])
            for k, v in manifest.get("records", {}).items()
        }
        return IndexState(
            generation=pointer["generation"],
            source_identity=manifest.get("source_identity"),
            embedding_model=manifest.get("embedding_model"),
            records=records,
        )

    def begin(self, *, full_rebuild: bool, source_identity: str, embedding_model: str) -> EdgeGenerationWriter:
        name = datetime.now(UTC).strftime("g%Y%m%dT%H%M%S%fZ")
        folder = self._collection.generation_dir(name)
        folder.mkdir(parents=True)
        pointer = self._collection.read_pointer()
        shard_dir = folder / "shard"
        if pointer is not None and not full_rebuild:
            copy_index_tree(self._collection.generation_dir(pointer["generation"]) / "shard", shard_dir)
            shard = qe.EdgeShard.load(str(shard_dir))
        else:
            shard = qe.EdgeShard.create(str(shard_dir), _config(self._dimensions))
        _ensure_keyword_indexes(shard)
        manifest = {
            "collection": self._collection.collection,
            "generation": name,
            "source_identity": source_identity,
            "embedding_model": embedding_model,
            "dimensions": self._dimensions,
            "based_on": None if full_rebuild or pointer is None else pointer["generation"],
        }
        return EdgeGenerationWriter(self._collection, name, shard, manifest, self._keep)

    def generations(self) -> list[str]:
        return self._collection.generations()

    def activate(self, generation: str) -> None:
        """Roll back (or forward) to a kept generation."""
        if generation not in self._collection.generations():
            raise ValueError(f"no published generation {generation!r}; kept: {self._collection.generations()}")
        self._collection.write_pointer(generation)
