"""Production adapter: qdrant-client against a Qdrant server or Qdrant Cloud (QDRANT_URL).

The collection name is an alias. Incremental ingests write into the collection behind it (the server
serves reads and writes concurrently); a full rebuild creates a new physical collection and moves the
alias only after it is written and validated. Tests run this adapter on qdrant-client's local mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

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

GENERATION_SEPARATOR = "--g"
MAX_CHAPTERS = 1000


def _sparse(vector: Any) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _filter(request: SearchRequest) -> models.Filter | None:
    conditions = request.conditions()
    if not conditions:
        return None
    return models.Filter(must=[
        models.FieldCondition(key=key, match=models.MatchValue(value=value)) for key, value in conditions
    ])


def _ensure_keyword_indexes(client: QdrantClient, collection: str) -> None:
    """Idempotent: a collection written before a field was indexed gets its index on the next ingest."""
    for field in KEYWORD_FIELDS:
        client.create_payload_index(collection, field, field_schema=models.PayloadSchemaType.KEYWORD)


def client_query(client: QdrantClient, collection: str, request: SearchRequest,
                 generation: str | None = None) -> list[SearchHit]:
    flt = _filter(request)
    payload = request.with_payload
    kind = request.search_kind()
    if kind is None:
        return []
    try:
        if kind == "dense":
            response = client.query_points(
                collection, query=list(request.dense or []), using=DENSE, query_filter=flt,
                limit=request.limit, with_payload=payload,
            )
        elif kind == "sparse":
            response = client.query_points(
                collection, query=_sparse(request.sparse), using=SPARSE, query_filter=flt,
                limit=request.limit, with_payload=payload,
            )
        else:
            response = client.query_points(
                collection,
                prefetch=[
                    models.Prefetch(query=list(request.dense), using=DENSE, limit=request.prefetch_limit, filter=flt),
                    models.Prefetch(query=_sparse(request.sparse), using=SPARSE, limit=request.prefetch_limit,
                                    filter=flt),
                ],
                query=models.RrfQuery(rrf=models.Rrf(k=request.rrf_k,
                                                     weights=[request.dense_weight, request.sparse_weight])),
                limit=request.limit,
                with_payload=payload,
            )
    except (ResponseHandlingException, UnexpectedResponse, ValueError) as exc:
        raise IndexUnavailable(f"Qdrant query on {collection!r} failed: {exc}") from exc
    return [SearchHit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {}) if payload else {},
                      generation=generation) for p in response.points]


def _scroll_records(client: QdrantClient, collection: str) -> dict[str, IndexedRecord]:
    records: dict[str, IndexedRecord] = {}
    offset = None
    while True:
        points, offset = client.scroll(
            collection, limit=1000, offset=offset, with_payload=RECORD_FIELDS, with_vectors=False
        )
        for point in points:
            records[str(point.id)] = payload_record(dict(point.payload or {}))
        if offset is None:
            return records


class QdrantVectorIndex:
    """Read side: queries the alias, so an alias switch is picked up by the next query."""

    def __init__(self, client: QdrantClient, collection: str) -> None:
        self._client = client
        self._collection = collection

    def search(self, request: SearchRequest) -> list[SearchHit]:
        live = self._live()
        return client_query(self._client, live, request, generation=live)

    def _live(self) -> str:
        """The physical collection behind the alias now (the collection itself if it is not an alias): what a search
        reads, and where its hits' payloads are read after it, whatever the alias points to by then."""
        try:
            live = _aliases(self._client).get(self._collection)
            if live is None and self._client.collection_exists(self._collection):
                live = self._collection
        except (ResponseHandlingException, UnexpectedResponse, OSError) as exc:
            raise IndexUnavailable(f"Qdrant at the configured QDRANT_URL is unreachable: {exc}") from exc
        if live is None:
            raise IndexUnavailable(f"no index for collection {self._collection!r} yet: run the ingest-textbook flow")
        return live

    def payloads(self, hits: Sequence[SearchHit]) -> list[SearchHit]:
        if not hits:
            return []
        collection = single_generation(hits) or self._collection
        try:
            records = self._client.retrieve(collection, [hit.id for hit in hits], with_payload=True, with_vectors=False)
        except (ResponseHandlingException, UnexpectedResponse, ValueError) as exc:
            raise GenerationGone(f"Qdrant collection {collection!r} cannot be read any more: {exc}") from exc
        payloads = {str(record.id): record.payload for record in records}
        return [replace(hit, payload=dict(payloads.get(hit.id) or {})) for hit in hits]

    def _exists(self) -> bool:
        try:
            return self._client.collection_exists(self._collection)
        except (ResponseHandlingException, UnexpectedResponse, OSError) as exc:
            raise IndexUnavailable(f"Qdrant at the configured QDRANT_URL is unreachable: {exc}") from exc

    def count(self) -> int:
        if not self._exists():
            raise IndexUnavailable(f"no index for collection {self._collection!r} yet: run the ingest-textbook flow")
        return self._client.count(self._collection, exact=True).count

    def chapters(self) -> set[str]:
        if not self._exists():
            raise IndexUnavailable(f"no index for collection {self._collection!r} yet: run the ingest-textbook flow")
        try:
            response = self._client.facet(self._collection, key="chapter", limit=MAX_CHAPTERS, exact=True)
        except (ResponseHandlingException, UnexpectedResponse, ValueError) as exc:
            raise IndexUnavailable(f"Qdrant facet on {self._collection!r} failed: {exc}") from exc
        return {str(hit.value) for hit in response.hits if hit.value}

    def close(self) -> None:
        self._client.close()


class QdrantGenerationWriter:
    def __init__(self, client: QdrantClient, alias: str, physical: str, *, is_new: bool, keep: int) -> None:
        self.name = physical
        self._client = client
        self._alias = alias
        self._is_new = is_new
        self._keep = keep

    def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        if not chunks:
            return
        self._client.upsert(
            self.name,
            points=[
                models.PointStruct(id=c.id, vector={DENSE: list(c.dense), SPARSE: _sparse(c.sparse)}, payload=c.payload)
                for c in chunks
            ],
            wait=True,
        )

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._client.delete(self.name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def records(self) -> dict[str, IndexedRecord]:
        return _scroll_records(self._client, self.name)

    def search(self, request: SearchRequest) -> list[SearchHit]:
        return client_query(self._client, self.name, request)

    def publish(self) -> None:
        if not self._is_new:
            return
        operations: list[Any] = []
        if self._alias in _aliases(self._client):
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self._alias)))
        operations.append(models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=self.name, alias_name=self._alias)
        ))
        self._client.update_collection_aliases(change_aliases_operations=operations)
        self._prune()

    def _prune(self) -> None:
        prefix = self._alias + GENERATION_SEPARATOR
        physical = sorted(c.name for c in self._client.get_collections().collections if c.name.startswith(prefix))
        older = [name for name in physical if name != self.name]
        for name in older[: max(0, len(older) - (self._keep - 1))]:
            self._client.delete_collection(name)

    def discard(self) -> None:
        # An in-place (incremental) write cannot be undone; re-running the flow converges instead.
        if self._is_new:
            self._client.delete_collection(self.name)


def _aliases(client: QdrantClient) -> dict[str, str]:
    return {a.alias_name: a.collection_name for a in client.get_aliases().aliases}


class QdrantIndexWriter:
    def __init__(self, client: QdrantClient, collection: str, *, dimensions: int, keep: int = 2) -> None:
        self._client = client
        self._alias = collection
        self._dimensions = dimensions
        self._keep = keep

    def _live(self) -> str | None:
        return _aliases(self._client).get(self._alias)

    def state(self) -> IndexState:
        live = self._live()
        if live is None:
            return IndexState(generation=None, source_identity=None, embedding_model=None, records={})
        metadata = self._client.get_collection(live).config.metadata or {}
        return IndexState(
            generation=live,
            source_identity=metadata.get("source_identity"),
            embedding_model=metadata.get("embedding_model"),
            records=_scroll_records(self._client, live),
        )

    def begin(self, *, full_rebuild: bool, source_identity: str, embedding_model: str) -> QdrantGenerationWriter:
        live = self._live()
        if live is not None and not full_rebuild:
            _ensure_keyword_indexes(self._client, live)
            return QdrantGenerationWriter(self._client, self._alias, live, is_new=False, keep=self._keep)
        name = f"{self._alias}{GENERATION_SEPARATOR}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
        self._client.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=self._dimensions, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={"source_identity": source_identity, "embedding_model": embedding_model},
        )
        _ensure_keyword_indexes(self._client, name)
        return QdrantGenerationWriter(self._client, self._alias, name, is_new=True, keep=self._keep)

    def generations(self) -> list[str]:
        prefix = self._alias + GENERATION_SEPARATOR
        return sorted(c.name for c in self._client.get_collections().collections if c.name.startswith(prefix))

    def activate(self, generation: str) -> None:
        if generation not in self.generations():
            raise ValueError(f"no kept generation {generation!r}; kept: {self.generations()}")
        writer = QdrantGenerationWriter(self._client, self._alias, generation, is_new=True, keep=10_000)
        writer.publish()
