"""The vector index: one contract (base.py), two adapters (edge.py: Qdrant Edge in process, the default;
qdrant.py: a Qdrant server through qdrant-client), and the factories that pick one from VECTOR_BACKEND.

The adapters import only base.py; they are imported here when chosen, so the service never loads the other one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.rag.vector_index.base import (
    DENSE,
    KEYWORD_FIELDS,
    RECORD_FIELDS,
    SPARSE,
    GenerationGone,
    GenerationWriter,
    IndexConflict,
    IndexedChunk,
    IndexedRecord,
    IndexState,
    IndexUnavailable,
    IndexWriter,
    SearchHit,
    SearchMode,
    SearchRequest,
    VectorIndex,
    check_same_source,
    payload_record,
    single_generation,
)
from app.settings import Settings

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

__all__ = [
    "DENSE",
    "GenerationGone",
    "GenerationWriter",
    "IndexConflict",
    "IndexState",
    "IndexUnavailable",
    "IndexWriter",
    "IndexedChunk",
    "IndexedRecord",
    "KEYWORD_FIELDS",
    "RECORD_FIELDS",
    "SPARSE",
    "SearchHit",
    "SearchMode",
    "SearchRequest",
    "VectorIndex",
    "check_same_source",
    "payload_record",
    "open_index_writer",
    "open_vector_index",
    "qdrant_client_for",
    "single_generation",
]


def open_vector_index(settings: Settings, collection: str | None = None) -> VectorIndex:
    """The read side chosen by VECTOR_BACKEND."""
    name = settings.collection_name(collection)
    if settings.vector_backend == "qdrant":
        from app.rag.vector_index.qdrant import QdrantVectorIndex

        return QdrantVectorIndex(qdrant_client_for(settings), name)
    from app.rag.vector_index.edge import EdgeVectorIndex

    return EdgeVectorIndex(settings.resolved_index_dir, name)


def open_index_writer(settings: Settings, collection: str | None = None) -> IndexWriter:
    """The write side chosen by VECTOR_BACKEND."""
    name = settings.collection_name(collection)
    if settings.vector_backend == "qdrant":
        from app.rag.vector_index.qdrant import QdrantIndexWriter

        return QdrantIndexWriter(
            qdrant_client_for(settings), name, dimensions=settings.embedding_dimensions,
            keep=settings.index_generations_kept,
        )
    from app.rag.vector_index.edge import EdgeIndexWriter

    return EdgeIndexWriter(
        settings.resolved_index_dir, name, dimensions=settings.embedding_dimensions,
        keep=settings.index_generations_kept,
    )


def qdrant_client_for(settings: Settings) -> QdrantClient:
    from qdrant_client import QdrantClient

    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return QdrantClient(url=settings.qdrant_url, api_key=api_key, timeout=10)
