"""Micro-batching of query embeddings: concurrent queries share one encode call.

One worker thread owns the encoder. A caller's texts join a bounded queue and the caller waits on a future
(`embed` from the request threads, `embed_async` from a coroutine). The worker takes every job waiting, up to
EMBEDDING_BATCH_MAX texts, encodes them in one call and hands each caller its own rows.

Waiting for company costs latency, so the worker waits only when the service is busy: after an encode call that
served several callers it lingers up to EMBEDDING_BATCH_WAIT_MS for as many as that call had (queries that
arrive while an encode runs are batched anyway). One query at a time never waits, nor changes threads: when the
encoder is idle, nothing is queued and the last call served one caller, `embed` encodes in the caller's own
thread (a hand-off to the worker and back costs two wake-ups, milliseconds on a busy machine). A full queue
refuses at once (EncoderOverloaded, 503 with Retry-After) instead of growing the wait of everyone behind it; an
encode error goes to every caller of that batch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

from app.observability.metrics import EMBEDDING_BATCH_QUERIES
from app.rag.embeddings import Embedder, EmbeddingError, EmbeddingResult


class EncoderOverloaded(EmbeddingError):
    """More texts wait for the encoder than EMBEDDING_QUEUE_MAX: the caller is refused, not queued."""


@dataclass
class _Job:
    texts: list[str]
    future: Future[EmbeddingResult]


class BatchingEmbedder:
    """An Embedder (same `embed(texts)`) whose concurrent callers share encode calls of `embedder`."""

    def __init__(self, embedder: Embedder, *, max_batch: int = 32, max_wait_s: float = 0.002,
                 max_queue: int = 256) -> None:
        self.model_name = embedder.model_name
        self.dimensions = embedder.dimensions
        self._embedder = embedder
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._max_queue = max_queue
        self._jobs: deque[_Job] = deque()
        self._queued_texts = 0
        self._last_batch_jobs = 1
        self._encoding = False  # an encode call runs (the worker's, or a lone caller's in its own thread)
        self._closed = False
        self._changed = threading.Condition()
        self._worker = threading.Thread(target=self._run, name="embedding-batcher", daemon=True)
        self._worker.start()

    # -- callers ------------------------------------------------------------------------------------
    def submit(self, texts: list[str]) -> Future[EmbeddingResult]:
        future: Future[EmbeddingResult] = Future()
        if not texts:
            future.set_result(EmbeddingResult(vectors=[], tokens=0))
            return future
        with self._changed:
            if self._closed:
                raise EmbeddingError("the query encoder has shut down")
            if self._queued_texts + len(texts) > self._max_queue:
                raise EncoderOverloaded(f"{self._queued_texts} queries are waiting for the encoder")
            self._jobs.append(_Job(list(texts), future))
            self._queued_texts += len(texts)
            self._changed.notify()
        return future

    def embed(self, texts: list[str]) -> EmbeddingResult:
        with self._changed:
            alone = (not self._encoding and not self._jobs and not self._closed and self._last_batch_jobs <= 1
                     and len(texts) <= self._max_batch)
            if alone:
                self._encoding = True
        if not alone:
            return self.submit(texts).result()
        try:
            EMBEDDING_BATCH_QUERIES.observe(1)
            return self._embedder.embed(texts)
        finally:
            with self._changed:
                self._encoding = False
                self._changed.notify_all()  # the worker takes what was queued meanwhile

    async def embed_async(self, texts: list[str]) -> EmbeddingResult:
        return await asyncio.wrap_future(self.submit(texts))

    def load(self) -> None:
        load = getattr(self._embedder, "load", None)
        if load is not None:
            load()

    def close(self) -> None:
        """Stop the worker; jobs still queued fail (the service is stopping)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._worker.join(timeout=30)

    # -- the worker ---------------------------------------------------------------------------------
    def _take(self, batch: list[_Job], size: int) -> int:
        """Move waiting jobs into `batch` while they fit (the first always does); returns the batch's text count."""
        while self._jobs and (not batch or size + len(self._jobs[0].texts) <= self._max_batch):
            job = self._jobs.popleft()
            self._queued_texts -= len(job.texts)
            if not job.future.set_running_or_notify_cancel():
                continue  # its caller gave up (a cancelled embed_async)
            batch.append(job)
            size += len(job.texts)
        return size

    def _next_batch(self) -> list[_Job] | None:
        with self._changed:
            while (not self._jobs or self._encoding) and not self._closed:
                self._changed.wait()
            if self._closed:
                for job in self._jobs:
                    job.future.set_exception(EmbeddingError("the query encoder has shut down"))
                self._jobs.clear()
                return None
            batch: list[_Job] = []
            size = self._take(batch, 0)
            if not batch:
                return []
            expected = self._last_batch_jobs  # the concurrency the last call saw
            deadline = time.monotonic() + self._max_wait_s
            while len(batch) < expected and size < self._max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
                size = self._take(batch, size)
            self._encoding = bool(batch)
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if not batch:
                continue
            self._last_batch_jobs = len(batch)
            EMBEDDING_BATCH_QUERIES.observe(len(batch))
            texts = [text for job in batch for text in job.texts]
            try:
                result = self._embedder.embed(texts)
            except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the failure
                error = exc if isinstance(exc, Exception) else EmbeddingError(f"the encoder stopped: {exc!r}")
                for job in batch:
                    job.future.set_exception(error)
                continue
            finally:
                with self._changed:
                    self._encoding = False
            self._deliver(batch, result)

    @staticmethod
    def _deliver(batch: list[_Job], result: EmbeddingResult) -> None:
        counts = result.token_counts
        start = 0
        for job in batch:
            end = start + len(job.texts)
            tokens = sum(counts[start:end]) if counts else result.tokens * len(job.texts) // len(result.vectors)
            job.future.set_result(EmbeddingResult(
                vectors=result.vectors[start:end], tokens=tokens, token_counts=tuple(counts[start:end]),
            ))
            start = end
