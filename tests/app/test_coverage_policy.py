"""The coverage decision (app/rag/coverage.py) on retrieval evidence, without an index."""

from __future__ import annotations

import pytest

from app.rag.coverage import CoveragePolicy
from app.rag.retrieval import Retrieval, RetrievedChunk

POLICY = CoveragePolicy(min_dense_score=0.35, min_sparse_score=3.0, min_query_terms_matched=0.75,
                        lexical_cover_sparse_score=20.0, lexical_cover_terms_matched=0.5)


def evidence(*, dense: float | None, sparse: float, found: int, terms: int, locale: str = "en",
             unknown: tuple[str, ...] = (), rare_names_in_best: bool = False) -> Retrieval:
    chunk = RetrievedChunk(id="c", rank=0, score=0.4, payload={"text": "...", "url": "/docs/a#b"})
    return Retrieval(chunks=[chunk], locale=locale, top_dense_score=dense, query_terms_found=found, embedding_tokens=0,
                     embed_ms=0.0, search_ms=0.0, top_sparse_score=sparse, query_terms=terms,
                     dense_reliable=locale == "en", unknown_terms=unknown,
                     rare_names=("optimus",) if rare_names_in_best else (), rare_names_in_best=rare_names_in_best)


def test_a_low_cosine_is_covered_when_the_question_rare_words_sit_in_one_chunk():
    assert not POLICY.covers(evidence(dense=0.29, sparse=12.0, found=3, terms=3))  # lexical evidence too weak
    assert POLICY.covers(evidence(dense=0.29, sparse=20.0, found=3, terms=3))
    assert not POLICY.covers(evidence(dense=0.29, sparse=25.0, found=2, terms=5))  # most terms not found


def test_urdu_with_half_its_terms_found_is_covered_only_on_strong_bm25():
    assert not POLICY.covers(evidence(dense=None, sparse=17.0, found=4, terms=6, locale="ur"))
    assert POLICY.covers(evidence(dense=None, sparse=22.0, found=4, terms=6, locale="ur"))
    assert POLICY.covers(evidence(dense=None, sparse=4.0, found=6, terms=8, locale="ur"))  # three quarters found


@pytest.mark.parametrize("locale", ["en", "ur"])
def test_a_name_the_book_never_uses_outweighs_strong_lexical_evidence(locale):
    assert not POLICY.covers(evidence(dense=0.6, sparse=30.0, found=5, terms=6, locale=locale, unknown=("Nav2",)))


def test_lexical_coverage_is_off_at_zero():
    off = CoveragePolicy(min_dense_score=0.35, min_sparse_score=3.0, min_query_terms_matched=0.75)
    assert not off.covers(evidence(dense=0.29, sparse=40.0, found=3, terms=3))


def test_a_rare_name_of_the_book_in_the_best_chunk_covers_a_question_when_switched_on():
    question = {"dense": 0.28, "sparse": 11.0, "found": 2, "terms": 3}  # "tell me about Tesla Optimus"
    assert not POLICY.covers(evidence(**question, rare_names_in_best=True))  # off by default
    names = CoveragePolicy(min_dense_score=0.35, min_sparse_score=3.0, min_query_terms_matched=0.75,
                           name_cover_max_chunks=4)
    assert names.covers(evidence(**question, rare_names_in_best=True))
    assert not names.covers(evidence(**question))  # the names are not all in the best chunk
    assert not names.covers(evidence(**question, rare_names_in_best=True, unknown=("Nav2",)))
