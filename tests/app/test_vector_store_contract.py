"""One contract, two adapters: Qdrant Edge (embedded) and qdrant-client (local mode, server API)."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from qdrant_client import QdrantClient

from app.rag.embeddings import EmbeddingResult
from app.rag.retrieval import Retriever
from app.rag.sparse import document_vector, query_vector
from app.rag.vector_index import (
    GenerationGone,
    IndexConflict,
    IndexedChunk,
    IndexUnavailable,
    SearchRequest,
    check_same_source,
)
from app.rag.vector_index.edge import EdgeIndexWriter, EdgeVectorIndex
from app.rag.vector_index.qdrant import QdrantIndexWriter, QdrantVectorIndex
from app.settings import Settings

DIMS = 4


@pytest.fixture(params=["edge", "qdrant-local"])
def store(request, tmp_path):
    """(writer, reader) for one collection."""
    if request.param == "edge":
        writer = EdgeIndexWriter(tmp_path, "contract", dimensions=DIMS, keep=2)
        reader = EdgeVectorIndex(tmp_path, "contract")
        yield writer, reader
        reader.close()
    else:
        client = QdrantClient(path=str(tmp_path / "qdrant"))
        yield QdrantIndexWriter(client, "contract", dimensions=DIMS, keep=2), QdrantVectorIndex(client, "contract")
        client.close()


def chunk(text: str, dense: list[float], locale: str = "en", source: str = "a.md") -> IndexedChunk:
    chunk_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{locale}{source}{text}"))
    chapter = source.removesuffix(".md")
    page = f"/docs/{chapter}" if locale == "en" else f"/{locale}/docs/{chapter}"
    return IndexedChunk(id=chunk_id, dense=dense, sparse=document_vector(text), payload={
        "text": text, "locale": locale, "source_path": source, "content_hash": f"h-{text}", "url": page,
        "page_url": page, "chapter": chapter,
    })


CHUNKS = [
    chunk("kalman filter predict update covariance", [1, 0, 0, 0]),
    chunk("zero moment point support polygon walking", [0, 1, 0, 0]),
    chunk("ros publisher subscriber topic", [0, 0, 1, 0], source="b.md"),
    chunk("کالمن فلٹر پیش گوئی", [1, 0, 0.1, 0], locale="ur"),
]


def publish(writer, chunks, *, full_rebuild=False, deletes=()):
    generation = writer.begin(full_rebuild=full_rebuild, source_identity="test", embedding_model="m")
    generation.upsert(chunks)
    generation.delete(list(deletes))
    generation.publish()
    return generation.name


def search(reader, text, dense, mode="hybrid", locale=None, limit=3):
    return reader.search(SearchRequest(dense=dense, sparse=query_vector(text), limit=limit, locale=locale, mode=mode))


def test_reader_without_any_generation_is_unavailable(store):
    _, reader = store
    with pytest.raises(IndexUnavailable, match="ingest"):
        reader.count()


def test_published_chunks_are_searchable_in_every_mode(store):
    writer, reader = store
    publish(writer, CHUNKS)
    assert reader.count() == 4
    for mode in ("hybrid", "dense", "sparse"):
        hits = search(reader, "kalman filter", [1, 0, 0, 0], mode=mode, locale="en")
        assert hits[0].payload["text"].startswith("kalman"), mode
    hits = search(reader, "zero moment point", [0, 0.9, 0.1, 0], locale="en")
    assert hits[0].payload["source_path"] == "a.md" and "moment" in hits[0].payload["text"]


def test_locale_filter_keeps_other_locales_out(store):
    writer, reader = store
    publish(writer, CHUNKS)
    hits = search(reader, "کالمن فلٹر", [1, 0, 0, 0], locale="ur", limit=10)
    assert [h.payload["locale"] for h in hits] == ["ur"]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
def test_chapter_filter_keeps_other_chapters_out_in_every_mode(store, mode):
    writer, reader = store
    publish(writer, CHUNKS)
    request = SearchRequest(dense=[0, 0, 1, 0], sparse=query_vector("kalman ros topic"), limit=10, mode=mode,
                            chapter="a")
    assert {h.payload["chapter"] for h in reader.search(request)} == {"a"}
    both = SearchRequest(dense=[1, 0, 0, 0], sparse=query_vector("kalman کالمن"), limit=10, mode=mode, locale="ur",
                         chapter="a")
    assert [h.payload["locale"] for h in reader.search(both)] == ["ur"]
    unknown = SearchRequest(dense=[1, 0, 0, 0], sparse=query_vector("kalman"), limit=10, mode=mode, chapter="zz")
    assert reader.search(unknown) == []


def test_page_filter_returns_only_that_page(store):
    writer, reader = store
    publish(writer, CHUNKS)
    request = SearchRequest(dense=[1, 0, 0, 0], sparse=query_vector("kalman topic"), limit=10, page_url="/docs/b")
    assert [h.payload["text"] for h in reader.search(request)] == ["ros publisher subscriber topic"]


def test_chapters_lists_the_distinct_chapters_of_the_live_generation(store):
    writer, reader = store
    publish(writer, CHUNKS)
    assert reader.chapters() == {"a", "b"}
    publish(writer, [chunk("new chapter text", [0, 0, 0, 1], source="c.md")])
    assert reader.chapters() == {"a", "b", "c"}


def test_sparse_search_with_no_known_terms_finds_nothing(store):
    writer, reader = store
    publish(writer, CHUNKS)
    assert search(reader, "xylophone", None, mode="sparse") == []


def test_state_lists_records_with_hashes(store):
    writer, _ = store
    publish(writer, CHUNKS)
    state = writer.state()
    assert state.generation is not None and state.source_identity == "test" and state.embedding_model == "m"
    assert {r.content_hash for r in state.records.values()} == {c.payload["content_hash"] for c in CHUNKS}


def test_incremental_generation_keeps_unchanged_chunks_and_applies_deletes(store):
    writer, reader = store
    publish(writer, CHUNKS)
    extra = chunk("tf2 frames transform tree", [0, 0, 0, 1], source="b.md")
    publish(writer, [extra], deletes=[CHUNKS[2].id])
    assert reader.count() == 4
    assert set(writer.state().records) == {CHUNKS[0].id, CHUNKS[1].id, CHUNKS[3].id, extra.id}
    assert search(reader, "transform frames", [0, 0, 0, 1])[0].id == extra.id


def test_discarded_generation_leaves_the_live_one_untouched(store):
    writer, reader = store
    publish(writer, CHUNKS[:2])
    generation = writer.begin(full_rebuild=True, source_identity="test", embedding_model="m")
    generation.upsert(CHUNKS)
    generation.discard()
    assert reader.count() == 2 and len(writer.state().records) == 2


def test_full_rebuild_switches_atomically_and_keeps_the_previous_generation(store):
    writer, reader = store
    first = publish(writer, CHUNKS)
    second = publish(writer, CHUNKS[:1], full_rebuild=True)
    assert reader.count() == 1
    assert writer.generations()[-2:] == [first, second]
    writer.activate(first)  # roll back
    assert reader.count() == 4


def test_old_generations_are_pruned_beyond_the_kept_number(store):
    writer, _ = store
    names = [publish(writer, CHUNKS[:1], full_rebuild=True) for _ in range(3)]
    assert writer.generations() == names[-2:]


def test_a_different_source_or_model_needs_a_full_rebuild(store):
    writer, _ = store
    publish(writer, CHUNKS)
    state = writer.state()
    with pytest.raises(IndexConflict, match="--collection"):
        check_same_source(state, source_identity="other", embedding_model="m", full_rebuild=False)
    with pytest.raises(IndexConflict, match="--full-rebuild"):
        check_same_source(state, source_identity="test", embedding_model="other", full_rebuild=False)
    check_same_source(state, source_identity="other", embedding_model="other", full_rebuild=True)


def test_edge_reader_follows_the_pointer_while_open(tmp_path):
    """The service keeps its index open while the flow publishes the next generation."""
    writer = EdgeIndexWriter(tmp_path, "live", dimensions=DIMS)
    reader = EdgeVectorIndex(tmp_path, "live")
    publish(writer, CHUNKS[:1])
    assert reader.count() == 1
    publish(writer, CHUNKS[1:2])  # the reader holds generation 1 open during this write
    assert reader.count() == 2
    reader.close()


def test_an_index_written_before_chapters_lists_none(store):
    writer, reader = store
    old = [IndexedChunk(id=c.id, dense=c.dense, sparse=c.sparse,
                        payload={k: v for k, v in c.payload.items() if k != "chapter"}) for c in CHUNKS]
    publish(writer, old)
    assert reader.chapters() == set()


def test_a_search_without_payloads_then_payloads_gives_the_hits_a_search_with_them_gives(store):
    writer, reader = store
    publish(writer, CHUNKS)
    for mode in ("hybrid", "dense", "sparse"):
        request = SearchRequest(dense=[1, 0, 0.1, 0], sparse=query_vector("kalman topic"), limit=4, mode=mode)
        bare = reader.search(replace(request, with_payload=False))
        assert bare and all(hit.payload == {} for hit in bare), mode
        with_payloads = reader.search(request)
        assert [(h.id, h.payload) for h in reader.payloads(bare)] == [(h.id, h.payload) for h in with_payloads], mode
    assert reader.payloads([]) == []


def test_payloads_are_read_from_the_generation_searched_after_another_went_live(store):
    """A reader never mixes generations: a hit's payload is the one its search saw, not the newer text."""
    writer, reader = store
    publish(writer, CHUNKS, full_rebuild=True)
    hits = search(reader, "kalman filter", [1, 0, 0, 0], locale="en", limit=1)
    bare = reader.search(SearchRequest(dense=[1, 0, 0, 0], sparse=None, limit=1, locale="en", mode="dense",
                                       with_payload=False))
    rewritten = CHUNKS[0]
    publish(writer, [IndexedChunk(id=rewritten.id, dense=rewritten.dense, sparse=rewritten.sparse,
                                  payload={**rewritten.payload, "text": "rewritten since"})], full_rebuild=True)
    newer = reader.search(SearchRequest(dense=[1, 0, 0, 0], sparse=None, limit=1, locale="en", mode="dense"))
    assert newer[0].id == bare[0].id and newer[0].payload["text"] == "rewritten since"
    assert reader.payloads(bare)[0].payload == hits[0].payload
    with pytest.raises(GenerationGone):  # hits found in two generations are not read as one answer
        reader.payloads([bare[0], replace(newer[0], payload={})])


def test_payloads_of_a_generation_no_longer_open_say_so(store):
    writer, reader = store
    publish(writer, CHUNKS)
    bare = reader.search(SearchRequest(dense=[1, 0, 0, 0], sparse=None, limit=2, mode="dense", with_payload=False))
    with pytest.raises(GenerationGone):
        reader.payloads([replace(hit, generation="gone-long-ago") for hit in bare])


class _OneSwitch:
    """A reader whose first payload read finds its generation replaced (a publish between search and read)."""

    def __init__(self, reader) -> None:
        self._reader = reader
        self.payload_reads = 0

    def __getattr__(self, name):
        return getattr(self._reader, name)

    def payloads(self, hits):
        self.payload_reads += 1
        if self.payload_reads == 1:
            raise GenerationGone("replaced meanwhile")
        return self._reader.payloads(hits)


class _FixedEmbedder:
    model_name, dimensions = "fixed", DIMS

    def embed(self, texts):
        return EmbeddingResult(vectors=[[1.0, 0.0, 0.0, 0.0] for _ in texts], tokens=len(texts))


class _FourDimensions(Settings):
    @property
    def embedding_dimensions(self) -> int:
        return DIMS


def test_retrieval_searches_again_when_its_generation_went_away_before_the_payloads_were_read(tmp_path):
    writer, reader = EdgeIndexWriter(tmp_path, "switch", dimensions=DIMS), EdgeVectorIndex(tmp_path, "switch")
    publish(writer, CHUNKS)
    index = _OneSwitch(reader)
    retriever = Retriever(embedder=_FixedEmbedder(), index=index,
                          settings=_FourDimensions(_env_file=None))
    retrieval = retriever.retrieve("kalman filter", locale="en", k=2)
    reader.close()
    assert index.payload_reads == 2
    assert retrieval.chunks and retrieval.chunks[0].text.startswith("kalman")
    assert all(chunk.payload["locale"] == "en" for chunk in retrieval.chunks)
