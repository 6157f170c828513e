"""The vector index: one small interface, two adapters (Qdrant Edge embedded; Qdrant server).

Readers (the query service) search the live generation of a collection. Writers (the ingest flow)
build the next generation next to it and publish it atomically: a pointer file for the embedded
engine, a collection alias for a Qdrant server. Readers never see a half-built index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.rag.sparse import SparseVector

DENSE = "dense"
SPARSE = "sparse"
SearchMode = Literal["hybrid", "dense", "sparse"]
RECORD_FIELDS = ["content_hash", "source_path", "locale"]
# Payload fields with a keyword index: what searches filter on (and what `chapters()` facets).
KEYWORD_FIELDS = ("locale", "source_path", "page_url", "chapter")


class IndexUnavailable(RuntimeError):
    """The index cannot be searched (never built, locked, server unreachable)."""


class GenerationGone(IndexUnavailable):
    """The generation a search read was replaced and closed before the hits' payloads were read: search again."""


class IndexConflict(RuntimeError):
    """A write would mix content that must stay apart (another source tree, another model)."""


@dataclass(frozen=True)
class IndexedChunk:
    id: str
    dense: list[float]
    sparse: SparseVector
    payload: dict[str, Any]


@dataclass(frozen=True)
class IndexedRecord:
    """What the ingest flow needs to know about a stored chunk to decide if it changed."""

    content_hash: str
    source_path: str
    locale: str


@dataclass(frozen=True)
class SearchHit:
    id: str
    score: float
    payload: dict[str, Any]
    # The generation (index folder / physical collection) that answered: `payloads` reads the same one.
    generation: str | None = None


@dataclass(frozen=True)
class SearchRequest:
    dense: list[float] | None
    sparse: SparseVector | None
    limit: int
    prefetch_limit: int = 40
    locale: str | None = None
    mode: SearchMode = "hybrid"
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    rrf_k: int = 10
    chapter: str | None = None
    page_url: str | None = None
    # Without payloads the hits carry `{}`: a search of many candidates of which few are read is much cheaper, and
    # `VectorIndex.payloads` reads the few.
    with_payload: bool = True

    def conditions(self) -> list[tuple[str, str]]:
        """(payload field, required value) pairs every hit must match."""
        pairs = [("locale", self.locale), ("chapter", self.chapter), ("page_url", self.page_url)]
        return [(key, value) for key, value in pairs if value is not None]

    def search_kind(self) -> SearchMode | None:
        """What the adapters run: the asked mode, narrowed by the vectors the request has (a hybrid search without
        sparse terms is a dense one; without a dense vector, a sparse one); None when there is nothing to search."""
        has_sparse = self.sparse is not None and bool(self.sparse.indices)
        if self.mode == "dense" or (self.mode == "hybrid" and not has_sparse):
            return "dense"
        if self.mode == "sparse" or self.dense is None:
            return "sparse" if has_sparse else None
        return "hybrid"


@dataclass(frozen=True)
class IndexState:
    """The live generation of a collection, as the writer found it."""

    generation: str | None
    source_identity: str | None
    embedding_model: str | None
    records: dict[str, IndexedRecord]


class VectorIndex(Protocol):
    """Read side, used by the query service."""

    def search(self, request: SearchRequest) -> list[SearchHit]: ...

    def payloads(self, hits: Sequence[SearchHit]) -> list[SearchHit]:
        """`hits` (from searches without payloads) with their payloads, read from the generation each hit was found
        in, never a newer one; GenerationGone when that generation is no longer open."""
        ...

    def count(self) -> int: ...

    def chapters(self) -> set[str]:
        """The distinct `chapter` values of the live generation."""
        ...

    def close(self) -> None: ...


class GenerationWriter(Protocol):
    name: str

    def upsert(self, chunks: Sequence[IndexedChunk]) -> None: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def records(self) -> dict[str, IndexedRecord]: ...

    def publish(self) -> None: ...

    def discard(self) -> None: ...


class IndexWriter(Protocol):
    """Write side, used by the ingest flow."""

    def state(self) -> IndexState: ...

    def begin(self, *, full_rebuild: bool, source_identity: str, embedding_model: str) -> GenerationWriter: ...

    def generations(self) -> list[str]: ...

    def activate(self, generation: str) -> None: ...


def check_same_source(state: IndexState, *, source_identity: str, embedding_model: str, full_rebuild: bool) -> None:
    if full_rebuild or state.generation is None:
        return
    if state.source_identity and state.source_identity != source_identity:
        raise IndexConflict(
            f"the collection holds {state.source_identity!r}, not {source_identity!r}: "
            "ingest into another collection (--collection NAME) or replace it with --full-rebuild"
        )
    if state.embedding_model and state.embedding_model != embedding_model:
        raise IndexConflict(
            f"the collection was embedded with {state.embedding_model!r}, not {embedding_model!r}: use --full-rebuild"
        )


def single_generation(hits: Sequence[SearchHit]) -> str | None:
    """The one generation `hits` were found in; GenerationGone when a new one went live between their searches."""
    generations = {hit.generation for hit in hits}
    if len(generations) > 1:
        raise GenerationGone(f"the hits come from generations {sorted(map(str, generations))}: one went live "
                             "between the searches")
    return next(iter(generations), None)


def payload_record(payload: dict[str, Any]) -> IndexedRecord:
    return IndexedRecord(
        content_hash=str(payload.get("content_hash", "")),
        source_path=str(payload.get("source_path", "")),
        locale=str(payload.get("locale", "")),
    )
