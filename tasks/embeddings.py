"""Embedding tasks: dense vectors from the configured backend, sparse vectors computed locally."""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from app.rag.chunking import Chunk
from app.rag.embeddings import Embedder, create_embedder
from app.rag.sparse import document_vector
from app.rag.vector_index import IndexedChunk
from app.settings import Settings


def embedder_for(settings: Settings) -> Embedder:
    return create_embedder(settings)


@task(name="embed-batch", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[2, 10, 30], timeout_seconds=900)
def embed_batch(chunks: list[Chunk], settings: Settings) -> tuple[list[IndexedChunk], int]:
    """Dense + sparse vectors for one batch. Retried: a transient API error must not fail the run."""
    result = embedder_for(settings).embed([c.embedding_text() for c in chunks])
    indexed = [
        IndexedChunk(id=c.id, dense=vector, sparse=document_vector(c.embedding_text()), payload=c.payload())
        for c, vector in zip(chunks, result.vectors, strict=True)
    ]
    return indexed, result.tokens


def embed_chunks(chunks: list[Chunk], settings: Settings, batch_size: int = 256) -> tuple[list[IndexedChunk], int]:
    """Embed in batches with progress in the logs; only the chunks the plan says are new or changed."""
    logger = get_run_logger()
    indexed: list[IndexedChunk] = []
    tokens = 0
    started = time.perf_counter()
    for start in range(0, len(chunks), batch_size):
        batch, batch_tokens = embed_batch(chunks[start : start + batch_size], settings)
        indexed.extend(batch)
        tokens += batch_tokens
        elapsed = time.perf_counter() - started
        logger.info("embedded %d/%d chunks (%.1f chunks/s)", len(indexed), len(chunks), len(indexed) / max(elapsed, 1e-9))
    return indexed, tokens
