"""Fusing the dense and sparse candidate lists of a question into one ranking.

The index returns two candidate lists (dense: cosine similarity; sparse: BM25). They are fused here rather
than by the index's own RRF, because rank fusion alone throws away how *much* better the best candidates
are: a chunk whose BM25 score is close to the best one, or whose cosine similarity is high, is a better
answer than one that merely sits at the same rank of the other list. The fused score of a chunk is

    dense_weight / (rrf_k + dense rank) + sparse_weight / (rrf_k + sparse rank)
      + bm25_weight * BM25 / best BM25 + cosine_weight * cosine   (cosine only where dense is reliable)

Every weight is a setting chosen on the calibration halves of bench/eval (bench/answer_quality.py).
Measured there and dropped: the heading path and the page title as their own IDF-weighted match (lower), a
dense vector of "title > heading" (no gain), a page's evidence from its next-best chunks (the Rust book's
chapter-first up by 1-3 questions of 72, the textbook's sections down as much), sentence-window vectors per chunk
scored by max-sim (English +1 question at best, the Rust book lower; bench/window_vectors.py), and a learned linear
reranker over 20 features of the top 40 (out of fold within a few questions of this fusion either way;
bench/learned_rerank.py); see bench/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from app.settings import Settings


@dataclass(frozen=True)
class FusionWeights:
    dense: float = 0.5
    sparse: float = 1.0
    rrf_k: int = 5
    bm25: float = 0.1
    cosine: float = 0.1  # 0 where the embedding model does not understand the question's language

    @classmethod
    def from_settings(cls, settings: Settings, locale: str | None, *, dense_reliable: bool) -> FusionWeights:
        return cls(dense=settings.dense_weight_for(locale), sparse=settings.sparse_weight, rrf_k=settings.rrf_k,
                   bm25=settings.fusion_bm25_weight,
                   cosine=settings.fusion_cosine_weight if dense_reliable else 0.0)


def fuse(dense_hits: list[Any], sparse_hits: list[Any], weights: FusionWeights, *, limit: int) -> list[Any]:
    """The union of both candidate lists, best fused score first (each hit's `score` becomes that score)."""
    scores: dict[str, float] = {}
    by_id: dict[str, Any] = {}
    best_bm25 = max((hit.score for hit in sparse_hits), default=0.0)
    for rank, hit in enumerate(dense_hits):
        scores[hit.id] = weights.dense / (weights.rrf_k + rank + 1) + weights.cosine * hit.score
        by_id[hit.id] = hit
    for rank, hit in enumerate(sparse_hits):
        relative = hit.score / best_bm25 if best_bm25 > 0 else 0.0
        scores[hit.id] = scores.get(hit.id, 0.0) + weights.sparse / (weights.rrf_k + rank + 1) + weights.bm25 * relative
        by_id.setdefault(hit.id, hit)
    ordered = sorted(scores, key=lambda chunk_id: -scores[chunk_id])[:limit]
    return [replace(by_id[chunk_id], score=scores[chunk_id]) for chunk_id in ordered]
