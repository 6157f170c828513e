"""bench/learned_rerank.py: the fused candidates' features and labels, the rankings they give, the pairwise fit."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest

from app.rag.vector_index import SearchHit
from bench.learned_rerank import (
    FEATURES,
    CalibrationQuestion,
    QuestionCandidates,
    candidate_features,
    figures,
    fit_pairwise,
    out_of_fold,
)

COLUMN = {name: i for i, name in enumerate(FEATURES)}


def _hit(chunk_id: str, score: float, page: str = "/docs/a", anchor: str = "x", text: str = "", **payload) -> SearchHit:
    return SearchHit(id=chunk_id, score=score, payload={"page_url": page, "url": f"{page}#{anchor}", "anchor": anchor,
                                                        "text": text, **payload})


def test_each_candidate_is_described_by_both_lists_its_terms_and_its_page():
    fused = [_hit("a", 0.4, text="topics carry messages", heading_path=["Topics"]),
             _hit("b", 0.2, page="/docs/b", text="services answer"),
             _hit("c", 0.1, anchor="y", text="topics")]
    dense = [SearchHit("a", 0.8, {}), SearchHit("b", 0.6, {})]
    sparse = [SearchHit("c", 10.0, {}), SearchHit("a", 5.0, {})]
    weights = {"topic": 1.0, "carry": 3.0}
    rows = candidate_features(fused, dense, sparse, {"topic", "carry"}, weights, dense_reliable=True)
    assert rows.shape == (3, len(FEATURES))
    a, b, c = rows
    assert a[COLUMN["1 / dense rank"]] == 1.0 and c[COLUMN["1 / dense rank"]] == 0.0
    assert c[COLUMN["cosine (English)"]] == 0.6  # not in the dense list: at most the list's lowest cosine
    assert b[COLUMN["cosine - best (English)"]] == pytest.approx(-0.2)
    assert c[COLUMN["BM25 / best"]] == 1.0 and a[COLUMN["BM25 / best"]] == 0.5 and b[COLUMN["1 / sparse rank"]] == 0.0
    assert a[COLUMN["terms in text"]] == 1.0 and c[COLUMN["terms in text"]] == 0.5
    assert c[COLUMN["terms in text (IDF)"]] == 0.25 and a[COLUMN["terms in heading path (IDF)"]] == 0.25
    assert a[COLUMN["page candidates (log)"]] == math.log1p(2) and b[COLUMN["page candidates (log)"]] == math.log1p(1)
    assert a[COLUMN["page 2nd fused / best"]] == c[COLUMN["page 2nd fused / best"]] == 0.25
    assert (a[COLUMN["best of its page"]], c[COLUMN["best of its page"]]) == (1.0, 0.0)
    untrusted = candidate_features(fused, dense, sparse, {"topic"}, {"topic": 1.0}, dense_reliable=False)
    assert not untrusted[:, [COLUMN["cosine (English)"], COLUMN["cosine - best (English)"]]].any()


def _candidates(corpus: str, sections: list[str], units: list[str], expected: tuple[str, ...],
                chapter: str = "c1") -> QuestionCandidates:
    question = CalibrationQuestion(corpus, "en", "q", expected, chapter)
    return QuestionCandidates(question, sections, units, [int(u in expected) for u in units],
                              [[0.0] * len(FEATURES)] * len(units), [], 0.0)


def test_a_ranking_shows_each_section_once_and_the_rust_book_ranks_its_pages():
    sections = ["/p#1", "/p#1", "/p#2", "/q#1"]
    textbook = _candidates("textbook", sections, sections, ("/p#2",))
    assert textbook.ranked([3, 2, 1, 0]) == ["/p#1", "/p#2", "/q#1"]
    assert textbook.ranked([0, 1, 2, 3]) == ["/q#1", "/p#2", "/p#1"]
    rust = _candidates("rust", sections, ["/p", "/p", "/p", "/q"], ("/q",))
    assert rust.ranked([3, 2, 1, 0]) == ["/p", "/q"]
    assert rust.ranked([3, 2, 1, -math.inf]) == ["/p"]  # a candidate the service does not read is not shown


def test_the_fusion_order_reads_only_the_services_candidates():
    sections = [f"/p#{i}" for i in range(20)]
    textbook = _candidates("textbook", sections, sections, ("/p#0",))
    assert textbook.fused_order() == sections[:5]


def test_pairwise_model_learns_the_feature_that_marks_the_right_candidate_out_of_fold():
    rng = np.random.default_rng(0)
    items = []
    for n in range(40):
        features = rng.normal(size=(10, len(FEATURES)))
        right = int(rng.integers(10))
        features[right, COLUMN["terms in text (IDF)"]] += 5.0  # the signal; the rest is noise
        sections = [f"/p{n}#{i}" for i in range(10)]
        item = _candidates("textbook", sections, sections, (sections[right],), chapter=f"c{n % 4}")
        item.features = features.tolist()
        items.append(item)
    model = fit_pairwise(items, tuple(range(len(FEATURES))))
    assert int(np.argmax(np.abs(model.weights))) == COLUMN["terms in text (IDF)"] and model.weights.max() > 0
    ranked = out_of_fold(items, fit_pairwise, tuple(range(len(FEATURES))), per_corpus=False)
    assert figures(items, ranked)["section first (en)"][0] >= 0.9
    by_fusion = figures(items, [q.fused_order() for q in items])["section first (en)"][0]
    assert by_fusion < 0.5


class _AxisEmbedder:
    """A question's vector: the axis of the chunk it should find first (what the probe records is checked)."""

    model_name = "axis"

    def embed(self, texts):
        from app.rag.embeddings import EmbeddingResult

        return EmbeddingResult(vectors=[[0.0, 1.0] + [0.0] * 382 for _ in texts], tokens=0)


def test_collect_describes_the_retrievers_candidates_on_a_tiny_index(tmp_path):
    from app.rag.sparse import document_vector
    from app.rag.vector_index import IndexedChunk, open_index_writer
    from app.settings import Settings
    from bench.learned_rerank import collect

    settings = Settings(_env_file=None, index_dir=tmp_path,
                        database_url="postgresql+psycopg://unused:unused@127.0.0.1:1/unused")  # pragma: allowlist secret
    chunks = [("/docs/ros#topics", "Topics carry messages between nodes."),
              ("/docs/ros#services", "Services answer requests."),
              ("/docs/sensors#imu", "An IMU measures acceleration; messages carry its readings.")]
    writer = open_index_writer(settings, "book")
    generation = writer.begin(full_rebuild=True, source_identity="t", embedding_model="m")
    generation.upsert([
        IndexedChunk(id=str(uuid.uuid5(uuid.NAMESPACE_URL, url)), dense=[0.0] * n + [1.0] + [0.0] * (383 - n),
                     sparse=document_vector(text),
                     payload={"text": text, "title": url.split("#")[0], "heading_path": [url.split("#")[1]],
                              "url": url, "page_url": url.split("#")[0], "anchor": url.split("#")[1], "locale": "en",
                              "ordinal": 0})
        for n, (url, text) in enumerate(chunks)
    ])
    generation.publish()
    question = CalibrationQuestion("textbook", "en", "How do topics carry messages?", ("/docs/ros#topics",), "ros")
    [found] = collect(settings, _AxisEmbedder(), "book", [question])
    assert sorted(found.sections) == sorted(url for url, _ in chunks)
    assert found.labels == [int(s == "/docs/ros#topics") for s in found.sections]
    assert found.baseline == found.fused_order() and found.baseline[0] == "/docs/ros#topics"
    rows = {s: dict(zip(FEATURES, f, strict=True)) for s, f in zip(found.sections, found.features, strict=True)}
    assert rows["/docs/ros#topics"]["terms in text"] == 1.0
    assert rows["/docs/sensors#imu"]["terms in text"] == pytest.approx(2 / 3)  # "messages", "carry"
    assert rows["/docs/ros#services"]["1 / dense rank"] == 1.0  # the embedder's axis is the second chunk's
    assert rows["/docs/ros#topics"]["page candidates (log)"] == math.log1p(2)
