"""Hybrid retrieval: dense and sparse candidates fused (app/rag/ranking.py), filtered by locale (and optionally a chapter),
English fallback; a selection's page can be favoured. Also gathers the evidence the coverage decision reads."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from app.observability.tracing import span
from app.rag.embeddings import Embedder
from app.rag.ranking import FusionWeights, fuse
from app.rag.sparse import query_vector, terms_of_text, tokenize
from app.rag.vector_index import GenerationGone, SearchMode, SearchRequest, VectorIndex
from app.rag.vocabulary import BookVocabulary, spelled_out_acronyms, without_pleasantries
from app.settings import Settings

DEFAULT_LOCALE = "en"
# Sparse hits read to see which of the query's terms the book uses at all (coverage evidence).
VOCABULARY_PROBE = 20
# Chunks read per section wanted: a long section has several chunks, and each section is returned once.
CHUNKS_PER_SECTION_READ = 3


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
    top_dense_score: float | None
    query_terms_found: int
    embedding_tokens: int
    embed_ms: float
    search_ms: float
    top_sparse_score: float | None = None
    query_terms: int = 0
    dense_reliable: bool = True
    # With a favoured page and its text (a reader's selection): the share of that text's terms the page holds.
    selection_matched: float | None = None
    # Names in the question that the whole book never uses (app/rag/vocabulary.py): Nav2, Docker, Asimov.
    unknown_terms: tuple[str, ...] = ()
    # Names in the question that the book uses in a few chunks only (Optimus, Unitree), and whether the best chunk
    # holds every one of them.
    rare_names: tuple[str, ...] = ()
    rare_names_in_best: bool = False

    @property
    def query_terms_matched(self) -> float:
        """The share of the query's terms found in the retrieved chunks or the best sparse hits of the book."""
        return self.query_terms_found / self.query_terms if self.query_terms else 0.0


def fuse_favouring(hits: list[Any], favoured: list[Any], *, limit: int, rrf_k: int) -> list[Any]:
    """Reciprocal-rank fusion of the global ranking with the favoured page's own ranking.

    A chunk of the favoured page that is also a good global hit comes first; the page's best chunks
    rise above weaker chunks of other pages, and strong hits of other pages keep their place.
    """
    scores: dict[str, float] = {}
    by_id: dict[str, Any] = {}
    for ranking in (hits, favoured):
        for rank, hit in enumerate(ranking):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (rrf_k + rank + 1)
            by_id.setdefault(hit.id, hit)
    ordered = sorted(scores, key=lambda chunk_id: -scores[chunk_id])
    return [replace(by_id[chunk_id], score=scores[chunk_id]) for chunk_id in ordered[:limit]]


@dataclass(frozen=True)
class Candidates:
    """A search's fused hits and, for a hybrid search, the dense and sparse lists they were fused from."""

    fused: list[Any]
    dense: list[Any]
    sparse: list[Any]


class Retriever:
    def __init__(self, *, embedder: Embedder, index: VectorIndex, settings: Settings) -> None:
        self._embedder = embedder
        self._index = index
        self._settings = settings
        self._vocabulary = BookVocabulary(index, settings.embedding_dimensions)

    def chapters(self) -> set[str]:
        return self._index.chapters()

    def retrieve(self, query: str, *, locale: str | None, k: int, mode: SearchMode = "hybrid",
                 chapter: str | None = None, favour_page: str | None = None, favour_text: str | None = None) -> Retrieval:
        """`chapter` restricts every search to one chapter; `favour_page` (a page URL) ranks its chunks higher,
        and `favour_text` (what the reader selected there) is looked up in that page's chunks."""
        options: dict[str, Any] = {"locale": locale, "k": k, "mode": mode, "chapter": chapter,
                                   "favour_page": favour_page, "favour_text": favour_text}
        try:
            return self._retrieve(query, **options)
        except GenerationGone:  # a new index generation went live between a search and its payloads' read
            return self._retrieve(query, **options)

    def _retrieve(self, query: str, *, locale: str | None, k: int, mode: SearchMode, chapter: str | None,
                  favour_page: str | None, favour_text: str | None) -> Retrieval:
        settings = self._settings
        started = time.perf_counter()
        query = spelled_out_acronyms(without_pleasantries(query))
        unknown_terms = tuple(self._vocabulary.unknown_names(query))
        rare_names = tuple(self._vocabulary.rare_names(query, settings.name_cover_max_chunks)
                           ) if settings.name_cover_max_chunks else ()
        query = self._vocabulary.expand(query)
        vocabulary_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        with span("query embedding", **{"rag.embedding_model": self._embedder.model_name}):
            embedded = self._embedder.embed([query]) if mode != "sparse" else None
        dense = embedded.vectors[0] if embedded else None
        vocabulary = self._vocabulary
        transliterated = vocabulary.transliterations(query)
        related = [*vocabulary.spelling_variants(query), *vocabulary.inflections(query),
                   *vocabulary.urdu_glosses(query), *(form for forms in transliterated.values() for form in forms)
                   ] if settings.search_related_forms else []
        sparse = query_vector(query, related=related, related_weight=settings.related_form_weight)
        embed_ms = (time.perf_counter() - started) * 1000

        started = time.perf_counter()

        def search(search_locale: str | None, search_mode: SearchMode, limit: int, page: str | None = None, *,
                   with_payload: bool = True) -> list[Any]:
            with span("vector search", **{"rag.search_mode": search_mode, "rag.locale": search_locale,
                                          "rag.limit": limit}):
                return self._index.search(SearchRequest(
                    dense=dense, sparse=sparse, limit=limit, prefetch_limit=settings.retrieval_prefetch,
                    locale=search_locale, mode=search_mode, dense_weight=settings.dense_weight_for(search_locale),
                    sparse_weight=settings.sparse_weight, rrf_k=settings.rrf_k, chapter=chapter, page_url=page,
                    with_payload=with_payload,
                ))

        def candidates(search_locale: str | None, limit: int, page: str | None = None) -> Candidates:
            """Hybrid: the dense and the sparse candidates, fused here (app/rag/ranking.py); else one list.
            The candidates are searched without payloads; the fused hits and the vocabulary probe's sparse hits
            (the only ones read) get theirs in one read."""
            if mode != "hybrid":
                return Candidates(search(search_locale, mode, limit, page), [], [])
            dense_hits = search(search_locale, "dense", settings.retrieval_prefetch, page, with_payload=False)
            sparse_hits = search(search_locale, "sparse", settings.retrieval_prefetch, page,
                                 with_payload=False) if sparse.indices else []
            weights = FusionWeights.from_settings(settings, search_locale,
                                                  dense_reliable=dense_is_reliable(settings, search_locale))
            fused = fuse(dense_hits, sparse_hits, weights, limit=limit)
            fused, probe = self._with_payloads(fused, sparse_hits[:VOCABULARY_PROBE])
            return Candidates(fused, dense_hits, probe + sparse_hits[VOCABULARY_PROBE:])

        read = k * CHUNKS_PER_SECTION_READ
        used_locale = locale
        found_candidates = candidates(locale, read)
        if not found_candidates.fused and locale not in (None, DEFAULT_LOCALE):
            used_locale = DEFAULT_LOCALE
            found_candidates = candidates(DEFAULT_LOCALE, read)
        hits = found_candidates.fused
        selection_matched = None
        if favour_page and hits:
            page_hits = candidates(used_locale, read, favour_page).fused
            hits = fuse_favouring(hits, page_hits, limit=read, rrf_k=settings.rrf_k)
            if favour_text:
                selection_matched = share_found(favour_text, page_hits)
        hits = best_chunk_per_section(hits)[:k]
        top_dense = top_sparse = None
        sparse_hits: list[Any] = []
        if dense is not None and hits:
            best = found_candidates.dense[:1] or search(used_locale, "dense", 1)
            top_dense = best[0].score if best else None
        if hits and sparse.indices:
            sparse_hits = found_candidates.sparse[:VOCABULARY_PROBE] or search(used_locale, "sparse", VOCABULARY_PROBE)
            top_sparse = sparse_hits[0].score if sparse_hits else 0.0
        search_ms = (time.perf_counter() - started) * 1000 + vocabulary_ms

        chunks = [RetrievedChunk(id=h.id, rank=i, score=h.score, payload=h.payload) for i, h in enumerate(hits)]
        query_terms = set(tokenize(query))
        # Only the reader's own words (and an acronym they spelled out) count as found. The forms searched beside
        # them are guesses (the book's spelling one edit away, its other inflection, a sound-alike in Latin
        # letters); counted as found, they let off-book questions through (bench/RESULTS.md).
        found = query_terms & _terms_of([*hits, *sparse_hits])
        return Retrieval(
            chunks=chunks,
            locale=used_locale,
            top_dense_score=top_dense,
            query_terms_found=len(found),
            embedding_tokens=embedded.tokens if embedded else 0,
            embed_ms=embed_ms,
            search_ms=search_ms,
            top_sparse_score=top_sparse,
            query_terms=len(query_terms),
            dense_reliable=dense_is_reliable(settings, locale),
            selection_matched=selection_matched,
            unknown_terms=unknown_terms,
            rare_names=rare_names,
            # A rare name is evidence only where a name the book never uses would have been seen: not beside a
            # word in Urdu letters that the book does not know, which may be one (اینڈرائیڈ and GPS).
            rare_names_in_best=bool(rare_names) and bool(hits) and set(rare_names) <= _terms_of(hits[:1])
            and not vocabulary.unknown_urdu_words(query, transliterated),
        )

    def _with_payloads(self, *hit_lists: list[Any]) -> list[list[Any]]:
        """Each list's hits with their payloads, read at once (a hit in several lists is read once)."""
        unique = list({hit.id: hit for hits in hit_lists for hit in hits}.values())
        payloads = {hit.id: hit.payload for hit in self._index.payloads(unique)}
        return [[replace(hit, payload=payloads[hit.id]) for hit in hits] for hits in hit_lists]


def best_chunk_per_section(hits: list[Any]) -> list[Any]:
    """One hit per section URL (page and anchor), the best-ranked chunk representing it, in rank order."""
    seen: set[str] = set()
    unique = []
    for hit in hits:
        url = str(hit.payload.get("url", "")) or hit.id
        if url not in seen:
            seen.add(url)
            unique.append(hit)
    return unique


def _terms_of(hits: list[Any]) -> set[str]:
    return {
        t for h in hits
        for t in terms_of_text(str(h.payload.get("text", "")) + " " + " ".join(h.payload.get("heading_path", [])))
    }


def share_found(text: str, hits: list[Any]) -> float:
    """The share of the text's terms that occur in the hits' chunks (0 for a text without terms)."""
    terms = set(tokenize(text))
    return len(terms & _terms_of(hits)) / len(terms) if terms else 0.0


def dense_is_reliable(settings: Settings, locale: str | None) -> bool:
    """The local model (MiniLM) is English-only: its scores for a question in another language mean little."""
    return locale in (None, DEFAULT_LOCALE) or settings.embedding_backend != "local"
