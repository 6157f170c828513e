"""Hybrid retrieval: dense + sparse fused with weighted RRF, filtered by locale, English fallback."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from app.rag.embeddings import Embedder
from app.rag.sparse import query_vector, tokenize
from app.rag.vector_store import SearchMode, SearchRequest, VectorIndex

DEFAULT_LOCALE = "en"


@dataclass(frozen=True)
class RetrievedChunk:
    id: str
    rank: int
    score: float
    payload: dict[str, Any]

    @property
    def text(self) -> str:
        return str(self.payload.get("text", ""))

    @property
    def url(self) -> str:
        return str(self.payload.get("url", ""))

    @property
    def page_url(self) -> str:
        return str(self.payload.get("page_url", ""))


@dataclass
class Retrieval:
    chunks: list[RetrievedChunk]
    locale: str | None
    fell_back_to_default_locale: bool
    top_dense_score: float | None
    query_terms_found: int
    embedding_tokens: int
    embed_ms: float
    search_ms: float
    timings: dict[str, float] = field(default_factory=dict)


class Retriever:
    def __init__(self, *, embedder: Embedder, index: VectorIndex, settings: Any) -> None:
        self._embedder = embedder
        self._index = index
        self._settings = settings

    def retrieve(self, query: str, *, locale: str | None, k: int, mode: SearchMode = "hybrid") -> Retrieval:
        settings = self._settings
        started = time.perf_counter()
        embedded = self._embedder.embed([query]) if mode != "sparse" else None
        dense = embedded.vectors[0] if embedded else None
        sparse = query_vector(query)
        embed_ms = (time.perf_counter() - started) * 1000

        started = time.perf_counter()

        def search(search_locale: str | None, search_mode: SearchMode, limit: int) -> list[Any]:
            return self._index.search(SearchRequest(
                dense=dense, sparse=sparse, limit=limit, prefetch_limit=settings.retrieval_prefetch,
                locale=search_locale, mode=search_mode, dense_weight=settings.dense_weight_for(search_locale),
                sparse_weight=settings.sparse_weight, rrf_k=settings.rrf_k,
            ))

        used_locale = locale
        hits = search(locale, mode, k)
        fell_back = False
        if not hits and locale not in (None, DEFAULT_LOCALE):
            used_locale, fell_back = DEFAULT_LOCALE, True
            hits = search(DEFAULT_LOCALE, mode, k)
        top_dense = None
        if dense is not None and hits:
            best = search(used_locale, "dense", 1)
            top_dense = best[0].score if best else None
        search_ms = (time.perf_counter() - started) * 1000

        chunks = [RetrievedChunk(id=h.id, rank=i, score=h.score, payload=h.payload) for i, h in enumerate(hits)]
        query_terms = set(tokenize(query))
        found = {t for c in chunks for t in set(tokenize(c.text + " " + " ".join(c.payload.get("heading_path", []))))}
        return Retrieval(
            chunks=chunks,
            locale=used_locale,
            fell_back_to_default_locale=fell_back,
            top_dense_score=top_dense,
            query_terms_found=len(query_terms & found),
            embedding_tokens=embedded.tokens if embedded else 0,
            embed_ms=embed_ms,
            search_ms=search_ms,
        )
