"""app/rag/batcher.py: concurrent queries share encode calls; a full queue refuses; errors reach every caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.rag.batcher import BatchingEmbedder, EncoderOverloaded
from app.rag.embeddings import EmbeddingError, EmbeddingResult


class GatedEmbedder:
    """A fake encoder: each text's vector is [len(text), call number]; a call can be held at a gate."""

    model_name = "fake"
    dimensions = 2

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.threads: list[str] = []
        self.entered = threading.Semaphore(0)
        self.gate = threading.Event()
        self.gate.set()
        self.fail_with: Exception | None = None

    def hold(self) -> None:
        self.gate.clear()

    def embed(self, texts: list[str]) -> EmbeddingResult:
        self.calls.append(list(texts))
        self.threads.append(threading.current_thread().name)
        self.entered.release()
        assert self.gate.wait(10), "the test never opened the gate"
        if self.fail_with is not None:
            raise self.fail_with
        return EmbeddingResult(vectors=[[float(len(t)), float(len(self.calls))] for t in texts],
                               tokens=sum(len(t) for t in texts), token_counts=tuple(len(t) for t in texts))


@pytest.fixture
def encoder() -> GatedEmbedder:
    return GatedEmbedder()


@pytest.fixture
def batcher_for() -> Iterator:
    """Batchers over a fake encoder, closed after the test."""
    made: list[BatchingEmbedder] = []

    def make(encoder: GatedEmbedder, **options) -> BatchingEmbedder:
        made.append(BatchingEmbedder(encoder, **{"max_batch": 32, "max_wait_s": 0.002, "max_queue": 64, **options}))
        return made[-1]

    yield make
    for batcher in made:
        batcher.close()


def occupy(batcher: BatchingEmbedder, encoder: GatedEmbedder, text: str = "first"):
    """Hold the worker inside an encode call of `text` (so what is submitted next waits in the queue)."""
    encoder.hold()
    running = batcher.submit([text])
    assert encoder.entered.acquire(timeout=10)
    return running


def queued(batcher: BatchingEmbedder, count: int) -> None:
    """Wait until `count` jobs wait in the queue (a readiness check, not a sleep)."""
    deadline = time.monotonic() + 10
    while len(batcher._jobs) < count:
        assert time.monotonic() < deadline, f"only {len(batcher._jobs)} of {count} jobs were queued"
        time.sleep(0.001)


def test_concurrent_queries_share_one_encode_call_and_each_gets_its_own_rows(encoder, batcher_for):
    batcher = batcher_for(encoder)
    first = occupy(batcher, encoder)
    texts = [["a" * n] for n in range(1, 7)] + [["two", "texts"]]
    futures = [batcher.submit(t) for t in texts]
    encoder.gate.set()
    results = [f.result(timeout=10) for f in futures]
    assert first.result(timeout=10).vectors == [[5.0, 1.0]]
    assert encoder.calls[1] == [t for group in texts for t in group], "the queued queries shared one call"
    assert len(encoder.calls) == 2
    for group, result in zip(texts, results, strict=True):
        assert [v[0] for v in result.vectors] == [float(len(t)) for t in group]
        assert result.tokens == sum(len(t) for t in group) and result.token_counts == tuple(len(t) for t in group)


def test_a_batch_is_capped_and_the_rest_waits_for_the_next_call(encoder, batcher_for):
    batcher = batcher_for(encoder, max_batch=4)
    occupy(batcher, encoder)
    futures = [batcher.submit([f"q{i}"]) for i in range(6)]
    encoder.gate.set()
    for future in futures:
        future.result(timeout=10)
    assert [len(call) for call in encoder.calls] == [1, 4, 2]


def test_one_query_at_a_time_never_waits_for_company(encoder, batcher_for):
    # A linger of 5 s would show in every call if a lone query waited for others.
    batcher = batcher_for(encoder, max_wait_s=5.0)
    started = time.monotonic()
    for i in range(5):
        assert batcher.embed([f"question {i}"]).vectors[0][1] == i + 1
    assert time.monotonic() - started < 4, "a lone query waited for company"
    assert [len(call) for call in encoder.calls] == [1] * 5
    assert set(encoder.threads) == {threading.current_thread().name}, "encoded in the caller's thread: no hand-off"


def test_after_a_shared_call_the_worker_waits_briefly_for_as_many_callers(encoder, batcher_for):
    batcher = batcher_for(encoder, max_wait_s=5.0)
    occupy(batcher, encoder)
    for i in range(3):
        batcher.submit([f"busy {i}"])
    encoder.gate.set()
    assert encoder.entered.acquire(timeout=10)  # the shared call of 3 ran: the service is busy
    with ThreadPoolExecutor(3) as pool:
        arrivals = [pool.submit(batcher.embed, [f"next {i}"]) for i in range(3)]
        for arrival in arrivals:
            arrival.result(timeout=10)
    assert [len(call) for call in encoder.calls] == [1, 3, 3], "the next callers were gathered into one call"


def test_a_full_queue_refuses_at_once_and_recovers(encoder, batcher_for):
    batcher = batcher_for(encoder, max_queue=3)
    running = occupy(batcher, encoder)
    waiting = [batcher.submit(["one"]), batcher.submit(["two", "three"])]
    with pytest.raises(EncoderOverloaded):
        batcher.submit(["four"])
    with pytest.raises(EncoderOverloaded):
        batcher.embed(["five"])
    encoder.gate.set()
    assert running.result(timeout=10) and all(w.result(timeout=10) for w in waiting)
    assert batcher.embed(["after"]).vectors, "the queue drained: callers are served again"


def test_an_encode_error_reaches_every_caller_of_that_batch(encoder, batcher_for):
    batcher = batcher_for(encoder)
    first = occupy(batcher, encoder)
    encoder.fail_with = EmbeddingError("onnxruntime failed: out of memory")
    futures = [batcher.submit([f"q{i}"]) for i in range(4)]
    encoder.gate.set()
    for future in [first, *futures]:
        with pytest.raises(EmbeddingError, match="out of memory"):
            future.result(timeout=10)
    encoder.fail_with = None
    assert batcher.embed(["later"]).vectors, "the worker survives a failed call"


def test_close_fails_the_queued_callers_and_refuses_new_ones(encoder, batcher_for):
    batcher = batcher_for(encoder)
    occupy(batcher, encoder)
    queued_future = batcher.submit(["queued"])
    closer = threading.Thread(target=batcher.close)
    closer.start()
    encoder.gate.set()
    closer.join(timeout=30)
    with pytest.raises(EmbeddingError, match="shut down"):
        queued_future.result(timeout=10)
    with pytest.raises(EmbeddingError, match="shut down"):
        batcher.submit(["late"])


async def _embed_many(batcher: BatchingEmbedder, texts: list[str]) -> list[EmbeddingResult]:
    import asyncio

    return await asyncio.gather(*(batcher.embed_async([t]) for t in texts))


def test_coroutines_share_calls_too(encoder, batcher_for):
    import asyncio

    batcher = batcher_for(encoder)
    occupy(batcher, encoder)
    task = threading.Thread(target=lambda: results.extend(asyncio.run(_embed_many(batcher, ["a", "bb", "ccc"]))))
    results: list[EmbeddingResult] = []
    task.start()
    queued(batcher, 3)
    encoder.gate.set()
    task.join(timeout=10)
    assert [r.vectors[0][0] for r in results] == [1.0, 2.0, 3.0]
    assert encoder.calls[1] == ["a", "bb", "ccc"]


def test_the_service_answers_503_overloaded_when_the_encoder_queue_is_full(client, monkeypatch):
    retriever = client.app.state.chat_service._pipeline.retriever

    class Refusing:
        model_name, dimensions = "all-MiniLM-L6-v2", 384

        def embed(self, texts: list[str]) -> EmbeddingResult:
            raise EncoderOverloaded("256 queries are waiting for the encoder")

    monkeypatch.setattr(retriever, "_embedder", Refusing())
    response = client.post("/v1/search", json={"query": "what is a ROS 2 node?"})
    assert response.status_code == 503, response.text
    assert response.json()["error_code"] == "overloaded" and response.headers["retry-after"] == "1"


def test_queries_arriving_during_a_lone_callers_encode_are_batched_after_it(encoder, batcher_for):
    batcher = batcher_for(encoder)
    encoder.hold()
    lone = ThreadPoolExecutor(1)
    first = lone.submit(batcher.embed, ["lone"])
    assert encoder.entered.acquire(timeout=10)  # encoding in the caller's thread
    waiting = [batcher.submit(["a"]), batcher.submit(["bb"])]
    encoder.gate.set()
    assert first.result(timeout=10).vectors == [[4.0, 1.0]]
    assert [w.result(timeout=10).vectors[0][0] for w in waiting] == [1.0, 2.0]
    assert encoder.calls == [["lone"], ["a", "bb"]] and encoder.threads[1] == "embedding-batcher"
    lone.shutdown()
