"""bench/window_vectors.py: sentence windows per chunk and the max-sim dense list the probe puts in the index's place."""

from __future__ import annotations

import uuid

import numpy as np

from app.rag.vector_index import SearchHit, SearchRequest
from bench.window_vectors import (
    WindowScoredIndex,
    WindowVectors,
    chunk_scores,
    sentence_units,
    sentence_windows,
    window_texts,
)


def test_sentences_table_rows_and_code_lines_are_units():
    text = "A topic carries messages. Nodes publish to it!\n| QoS | depth |\n`ros2 topic list`"
    assert sentence_units(text) == ["A topic carries messages.", "Nodes publish to it!", "| QoS | depth |",
                                    "`ros2 topic list`"]


def test_windows_cover_every_unit_and_the_last_window_ends_at_the_last_unit():
    units = list("abcdef")
    assert sentence_windows(units, 2, 1) == ["a b", "b c", "c d", "d e", "e f"]
    assert sentence_windows(units, 3, 2) == ["a b c", "c d e", "d e f"]
    assert sentence_windows(units[:2], 3, 1) == ["a b"]
    assert sentence_windows([], 2, 1) == []


def test_each_window_carries_its_chunks_heading_path():
    payloads = [{"title": "ROS 2", "heading_path": ["ROS 2", "Topics"], "text": "One. Two. Three."},
                {"title": "Sensors", "heading_path": ["Sensors"], "text": ""}]
    texts, owner = window_texts(payloads, 2, 1)
    assert texts == ["ROS 2 > Topics\nOne. Two.", "ROS 2 > Topics\nTwo. Three."]
    assert owner == [0, 0]


def _store() -> WindowVectors:
    payloads = [{"text": "diluted", "locale": "en"}, {"text": "steady", "locale": "en"}, {"text": "ur", "locale": "ur"}]
    chunks = np.array([[0.6, 0.8, 0.0], [0.8, 0.6, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    windows = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.8, 0.6, 0.0]], dtype=np.float32)
    return WindowVectors(ids=["a", "b", "c"], payloads=payloads, chunk_vectors=chunks, window_vectors=windows,
                         window_owner=np.array([0, 0, 1]), window_tokens=0, chunk_tokens=0, embed_s=0.0)


def test_a_chunk_scores_its_best_window_mixed_with_its_own_vector():
    question = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    store = _store()
    assert np.allclose(chunk_scores(store, question, 1.0), [0.6, 0.8, 1.0])
    assert np.allclose(chunk_scores(store, question, 0.0), [1.0, 0.8, 1.0])  # "c" has no windows: its own vector
    assert np.allclose(chunk_scores(store, question, 0.5), [0.8, 0.8, 1.0])


class _SparseOnly:
    def search(self, request):
        return [SearchHit(id="sparse", score=1.0, payload={})]


def test_the_dense_list_is_ranked_by_windows_within_the_filters_and_other_searches_go_to_the_index():
    index = WindowScoredIndex(_SparseOnly(), _store(), alpha=0.0)
    dense = index.search(SearchRequest(dense=[1.0, 0.0, 0.0], sparse=None, limit=5, locale="en", mode="dense"))
    assert [h.id for h in dense] == ["a", "b"] and dense[0].score == 1.0
    every_locale = index.search(SearchRequest(dense=[1.0, 0.0, 0.0], sparse=None, limit=5, mode="dense"))
    assert {h.id for h in every_locale[:2]} == {"a", "c"} and every_locale[2].id == "b"
    from app.rag.sparse import query_vector

    sparse = index.search(SearchRequest(dense=None, sparse=query_vector("topic"), limit=5, mode="sparse"))
    assert [h.id for h in sparse] == ["sparse"]


class _UnitEmbedder:
    """Every text's vector: the first axis (what the probe stores is checked, not the model)."""

    def embed(self, texts):
        from app.rag.embeddings import EmbeddingResult

        return EmbeddingResult(vectors=[[1.0] + [0.0] * 383 for _ in texts], tokens=0)


def test_the_probe_reads_every_chunk_of_the_live_generation_with_its_stored_vector(tmp_path):
    from app.rag.sparse import document_vector
    from app.rag.vector_index import IndexedChunk, open_index_writer
    from app.settings import Settings
    from bench.window_vectors import window_vectors

    settings = Settings(_env_file=None, index_dir=tmp_path,
                        database_url="postgresql+psycopg://unused:unused@127.0.0.1:1/unused")  # pragma: allowlist secret
    texts = {"c1": "Topics carry messages. Publishers write. Subscribers read.", "c2": "One sentence only."}
    writer = open_index_writer(settings, "book")
    generation = writer.begin(full_rebuild=True, source_identity="t", embedding_model="m")
    generation.upsert([
        IndexedChunk(id=str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                     dense=[0.0] * n + [1.0] + [0.0] * (383 - n), sparse=document_vector(text),
                     payload={"text": text, "title": "T", "heading_path": ["T", name]})
        for n, (name, text) in enumerate(texts.items())
    ])
    generation.publish()
    store = window_vectors(settings, _UnitEmbedder(), "book", 2, 1)
    assert sorted(p["text"] for p in store.payloads) == sorted(texts.values())
    rows = {p["heading_path"][1]: i for i, p in enumerate(store.payloads)}
    assert store.chunk_vectors[rows["c1"]][0] == 1.0 and store.chunk_vectors[rows["c2"]][1] == 1.0
    assert sorted(store.window_owner.tolist()) == sorted([rows["c1"], rows["c1"], rows["c2"]])
    assert store.window_vectors.shape == (3, 384) and store.window_tokens > store.chunk_tokens > 0
