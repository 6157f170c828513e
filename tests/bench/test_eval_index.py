"""bench/eval_index.py: an evaluation index per chunking variant, built like the ingest flow builds one."""

from __future__ import annotations

from app.rag.vector_index import SearchRequest, open_vector_index
from app.settings import Settings
from bench.eval_index import build_collection

CHAPTER = "# Sensors\n\n" + "\n\n".join(
    f"## Sensor {n}\n\n" + " ".join(f"Sensor {n} measures quantity {n} at rate {n}0 Hz, sentence {i}." for i in range(6))
    for n in range(3)
)


def test_a_smaller_chunk_size_builds_more_chunks_and_each_variant_is_searchable(tmp_path):
    tree = tmp_path / "book"
    tree.mkdir()
    (tree / "sensors.md").write_text(CHAPTER, encoding="utf-8")
    counts = {}
    for max_chars in (1000, 150):
        settings = Settings(_env_file=None, index_dir=tmp_path / f"index-{max_chars}",
                            database_url="postgresql+psycopg://unused:unused@127.0.0.1:1/unused")  # pragma: allowlist secret
        counts[max_chars] = build_collection(settings, tree, "book", max_chars=max_chars, min_chars=100)
        index = open_vector_index(settings, "book")
        try:
            assert index.count() == counts[max_chars]
            probe = [0.0] * (settings.embedding_dimensions - 1) + [1.0]
            hits = index.search(SearchRequest(dense=probe, sparse=None, limit=50, mode="dense"))
            assert {h.payload["anchor"] for h in hits} == {"sensor-0", "sensor-1", "sensor-2"}
            assert all(len(h.payload["text"]) <= max_chars for h in hits)
        finally:
            index.close()
    assert counts[150] > counts[1000] == 3
