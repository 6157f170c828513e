"""The ONNX model (app/rag/model_export.py + OnnxEmbedder) against sentence-transformers/torch.

Its vectors must be torch's (cosine >= 0.999 on every chunk of the textbook, both locales), so an index built
with either runtime stays valid for the other (the collection name does not record the runtime).
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import tasks.textbook as textbook
from app.rag.embeddings import EmbeddingError, OnnxEmbedder, TorchEmbedder, create_embedder
from app.settings import PROJECT_ROOT, Settings

MIN_COSINE = 0.999


def textbook_chunks() -> list:
    with mock.patch.object(textbook, "get_run_logger"):  # the tasks' bodies, without a flow run around them
        files = textbook.discover_chapters.fn(PROJECT_ROOT / "website")
        return textbook.parse_and_chunk.fn(files).chunks


def test_onnx_vectors_equal_torchs_on_every_chunk_of_the_textbook():
    chunks = textbook_chunks()
    assert {c.locale for c in chunks} == {"en", "ur"}
    texts = [c.embedding_text() for c in chunks]
    onnx = create_embedder(Settings(_env_file=None, embedding_runtime="onnx"))
    torch = create_embedder(Settings(_env_file=None, embedding_runtime="torch"))
    assert isinstance(onnx, OnnxEmbedder) and isinstance(torch, TorchEmbedder)
    expected, actual = torch.embed(texts), onnx.embed(texts)
    cosines = (np.asarray(expected.vectors) * np.asarray(actual.vectors)).sum(axis=1)
    worst = int(cosines.argmin())
    assert cosines.min() >= MIN_COSINE, f"chunk {chunks[worst].id} ({chunks[worst].locale}): cosine {cosines[worst]}"
    assert np.allclose(np.linalg.norm(actual.vectors, axis=1), 1.0, atol=1e-5), "unit vectors, as torch's"
    assert actual.token_counts == expected.token_counts and actual.tokens == expected.tokens


def test_queries_too_and_the_runtime_does_not_change_the_collection():
    queries = ["What is a ROS 2 node?", "  spaces around  ", "x", "ZMP کیا ہے؟", "topic " * 300]
    onnx = create_embedder(Settings(_env_file=None, embedding_runtime="onnx"))
    torch = create_embedder(Settings(_env_file=None, embedding_runtime="torch"))
    cosines = (np.asarray(torch.embed(queries).vectors) * np.asarray(onnx.embed(queries).vectors)).sum(axis=1)
    assert cosines.min() >= MIN_COSINE, cosines
    assert Settings(_env_file=None, embedding_runtime="onnx").collection_name() == \
        Settings(_env_file=None, embedding_runtime="torch").collection_name()


def test_a_missing_export_fails_with_the_command_that_writes_it(tmp_path: Path):
    embedder = create_embedder(Settings(_env_file=None, embedding_model_dir=tmp_path / "absent"))
    with pytest.raises(EmbeddingError, match="python -m app export-embedding-model"):
        embedder.embed(["a question"])


def test_an_export_of_another_model_is_refused(tmp_path: Path):
    source = Settings(_env_file=None).resolved_embedding_model_dir
    for name in ("model.onnx", "tokenizer.json"):
        (tmp_path / name).symlink_to(source / name)
    (tmp_path / "embedding.json").write_text('{"model": "all-mpnet-base-v2", "dimensions": 768}')
    with pytest.raises(EmbeddingError, match="all-mpnet-base-v2"):
        OnnxEmbedder(tmp_path).load()
