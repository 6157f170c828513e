"""Does the book cover a question? Decided from retrieval evidence before any answer is written.

Two kinds of evidence, each trusted where it means something:

- dense: the cosine similarity of the best chunk. Reliable where the embedding model understands the
  question's language (English with the local MiniLM model; every language with OpenAI's models).
- sparse: the BM25 score of the best chunk (IDF-weighted, so common words add little) together with the
  share of the question's terms found in the retrieved chunks. An off-topic question can match one or
  two frequent words strongly, or many words weakly, but not both. Used where dense is not reliable
  (Urdu with the local model).

- the question's own terms that the whole book never uses (app/rag/vocabulary.py: product names, people,
  tools next to the book's topic: Nav2, Docker, Asimov), misspellings of the book's words excepted. Retrieval
  always finds *something* for a near-topic question ("How does Nav2 plan a path?" matches the book's path
  planning well); the name it cannot find is what says the book does not answer it. Both locales.

- strong lexical evidence on its own: the best chunk's BM25 score far above anything an off-book question
  reaches (20; near-topic and off-topic calibration questions stay below 18), with at least half of the
  question's terms found. MiniLM gives a paraphrase or a question about a number in a table a low cosine
  although its rare words sit in one chunk ("What year was the hydraulic Atlas retired?"); in Urdu, where the
  share of terms decides, a question that spells half its words differently from the book still has them.

- a rare name of the book: a word of the question written like a name whose terms the book uses in a few chunks only
  (NAME_COVER_MAX_CHUNKS: Optimus, Tesla, Unitree; not ROS), every such name in the best chunk. "Tell me about Tesla
  Optimus" has one table row to go on: a low cosine and a BM25 of two rare words, neither enough alone. Not when the
  question has a word in Urdu letters that the book knows in no form: the unknown-name check reads Latin letters, so
  "Android" written اینڈرائیڈ beside the book's GPS would pass unseen (app/rag/retrieval.py sets the evidence).

A question about a passage the reader selected on a page is covered when that page holds the passage
(the same share of its terms), whatever the question's own wording ("why does this matter?").

For Urdu with the local model the terms share is the deciding evidence: three quarters of the question's terms
(min_query_terms_matched 0.75, "3 of 4", "6 of 8") found in the retrieved chunks; the book's other forms and
spellings of the question's words count in retrieval (app/rag/vocabulary.py), not in this share.

The thresholds are settings, chosen on the calibration halves of bench/eval (by chapter and topic group, see
bench/answer_quality.py) and the old sets; the held-out halves are only reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.rag.retrieval import Retrieval
from app.settings import Settings


@dataclass(frozen=True)
class CoveragePolicy:
    min_dense_score: float
    min_sparse_score: float
    min_query_terms_matched: float
    max_unknown_terms: int = 0
    lexical_cover_sparse_score: float = 0.0  # 0: no coverage on lexical evidence alone
    lexical_cover_terms_matched: float = 0.5
    name_cover_max_chunks: int = 0  # 0: no coverage on a rare name alone

    @classmethod
    def from_settings(cls, settings: Settings) -> "CoveragePolicy":
        return cls(min_dense_score=settings.min_dense_score, min_sparse_score=settings.min_sparse_score,
                   min_query_terms_matched=settings.min_query_terms_matched,
                   max_unknown_terms=settings.max_unknown_terms,
                   lexical_cover_sparse_score=settings.lexical_cover_sparse_score,
                   lexical_cover_terms_matched=settings.lexical_cover_terms_matched,
                   name_cover_max_chunks=settings.name_cover_max_chunks)

    def strong_lexical_evidence(self, retrieval: Retrieval) -> bool:
        return (self.lexical_cover_sparse_score > 0
                and (retrieval.top_sparse_score or 0.0) >= self.lexical_cover_sparse_score
                and retrieval.query_terms_matched >= self.lexical_cover_terms_matched)

    def covers(self, retrieval: Retrieval) -> bool:
        if not retrieval.chunks:
            return False
        if retrieval.selection_matched is not None and retrieval.selection_matched >= self.min_query_terms_matched:
            return True  # a question about a passage of the book, found on the page it was selected on
        if retrieval.query_terms_found == 0 or len(retrieval.unknown_terms) > self.max_unknown_terms:
            return False
        if self.strong_lexical_evidence(retrieval):
            return True
        if self.name_cover_max_chunks and retrieval.rare_names_in_best:
            return True
        if retrieval.dense_reliable and retrieval.top_dense_score is not None:
            return retrieval.top_dense_score >= self.min_dense_score
        return (retrieval.top_sparse_score or 0.0) >= self.min_sparse_score and (
            retrieval.query_terms_matched >= self.min_query_terms_matched
        )
