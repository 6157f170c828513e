"""Sentence-window dense vectors per chunk, measured on the calibration halves (issue 14, ranking; dropped).

MiniLM was trained on sentence pairs, so one vector for a ~1000-character chunk may dilute the sentence a
paraphrased question matches. This probe gives every chunk of a prebuilt evaluation index (bench/eval_index.py)
vectors of its sentence windows (SIZE sentences, every STRIDE sentences; table rows, list items and code lines
count as sentences), each prefixed with the chunk's title and heading path as `Chunk.embedding_text()` prefixes
the chunk, and scores a chunk for the dense list by

    ALPHA * cosine(question, chunk) + (1 - ALPHA) * max over its windows of cosine(question, window)

(ALPHA 1: the index's own dense search; 0: windows only). Only the dense candidate list changes: the sparse list,
the fusion (app/rag/ranking.py), the coverage decision and the answers are the service's, so the figures are what
the service would score. The pipeline itself is untouched.

    python -m bench.eval_index .data/eval-index
    python -m bench.window_vectors --index-dir .data/eval-index --variant 2,1,0.5 --variant 3,2,0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.rag.markdown import split_sentences
from app.rag.vector_index import DENSE, SearchHit, SearchRequest


def sentence_units(text: str) -> list[str]:
    """The chunk's sentences; a line without a sentence end (a table row, a list item, a code line) is one."""
    return [s.strip() for line in text.split("\n") for s in split_sentences(line.strip()) if s.strip()]


def sentence_windows(units: list[str], size: int, stride: int) -> list[str]:
    """Windows of `size` units every `stride` units; the last window ends at the last unit."""
    if len(units) <= size:
        return [" ".join(units)] if units else []
    starts = list(range(0, len(units) - size + 1, stride))
    if starts[-1] != len(units) - size:
        starts.append(len(units) - size)
    return [" ".join(units[start:start + size]) for start in starts]


def heading_context(payload: dict[str, Any]) -> str:
    title = str(payload.get("title", ""))
    return " > ".join((title, *[h for h in payload.get("heading_path", []) if h != title]))


@dataclass(frozen=True)
class WindowVectors:
    """A collection's chunks (ids, payloads, their indexed vectors) and their windows' vectors."""

    ids: list[str]
    payloads: list[dict[str, Any]]
    chunk_vectors: np.ndarray  # chunks x dims, unit length
    window_vectors: np.ndarray  # windows x dims, unit length
    window_owner: np.ndarray  # window -> chunk row
    window_tokens: int
    chunk_tokens: int
    embed_s: float


def window_texts(payloads: list[dict[str, Any]], size: int, stride: int) -> tuple[list[str], list[int]]:
    texts, owner = [], []
    for row, payload in enumerate(payloads):
        context = heading_context(payload)
        for window in sentence_windows(sentence_units(str(payload.get("text", ""))), size, stride):
            texts.append(f"{context}\n{window}")
            owner.append(row)
    return texts, owner


def chunk_scores(store: WindowVectors, question: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * the chunk's cosine + (1 - alpha) * its best window's (a chunk without windows: its own cosine)."""
    chunk = store.chunk_vectors @ question
    best = np.full(len(store.ids), -np.inf, dtype=np.float32)
    np.maximum.at(best, store.window_owner, store.window_vectors @ question)
    best = np.where(np.isfinite(best), best, chunk)
    return alpha * chunk + (1 - alpha) * best


class WindowScoredIndex:
    """The index, with its dense search replaced by `chunk_scores` (exact, over every chunk the filters keep)."""

    def __init__(self, index: Any, store: WindowVectors, alpha: float) -> None:
        self._index = index
        self._store = store
        self._alpha = alpha

    def search(self, request: SearchRequest) -> list[SearchHit]:
        if request.search_kind() != "dense":
            return self._index.search(request)
        store = self._store
        scores = chunk_scores(store, np.asarray(request.dense, dtype=np.float32), self._alpha)
        conditions = request.conditions()
        hits = []
        for row in np.argsort(-scores, kind="stable"):
            if all(store.payloads[row].get(key) == value for key, value in conditions):
                hits.append(SearchHit(id=store.ids[row], score=float(scores[row]), payload=store.payloads[row]))
                if len(hits) == request.limit:
                    break
        return hits

    def count(self) -> int:
        return self._index.count()

    def chapters(self) -> set[str]:
        return self._index.chapters()

    def close(self) -> None:
        self._index.close()


def indexed_chunks(settings: Any, collection: str | None) -> tuple[list[str], list[dict[str, Any]], np.ndarray]:
    """Every chunk of the collection's live generation (Qdrant Edge) with its stored dense vector."""
    import qdrant_edge as qe

    from app.rag.vector_index.edge import OPEN_SHARDS, EdgeCollection

    folder = EdgeCollection(settings.resolved_index_dir, settings.collection_name(collection))
    pointer = folder.read_pointer()
    if pointer is None:
        raise SystemExit(f"no index in {folder.root}: build it with python -m bench.eval_index")
    shard, reader_copy = OPEN_SHARDS.acquire(folder, pointer["generation"])
    ids, payloads, vectors = [], [], []
    try:
        offset = None
        while True:
            points, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=1000, with_payload=True,
                                                           with_vector=[DENSE]))
            for point in points:
                ids.append(str(point.id))
                payloads.append(dict(point.payload or {}))
                vectors.append(point.vector[DENSE])
            if offset is None:
                break
    finally:
        OPEN_SHARDS.release(reader_copy)
    return ids, payloads, np.asarray(vectors, dtype=np.float32)


def token_count(settings: Any, texts: list[str]) -> int:
    """The model's tokens over the texts (its tokenizer, truncation as configured): the embedding work."""
    import json

    from tokenizers import Tokenizer

    from app.rag.embeddings import MANIFEST_FILE, TOKENIZER_FILE

    folder = settings.resolved_embedding_model_dir
    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length=int(json.loads((folder / MANIFEST_FILE).read_text())["max_seq_length"]))
    tokenizer.no_padding()  # the file's padding would count each batch's longest text for every text
    return sum(len(e.ids) for e in tokenizer.encode_batch([t.strip() for t in texts]))


def window_vectors(settings: Any, embedder: Any, collection: str | None, size: int, stride: int) -> WindowVectors:
    ids, payloads, chunk_vectors = indexed_chunks(settings, collection)
    texts, owner = window_texts(payloads, size, stride)
    started = time.perf_counter()
    vectors = np.asarray(embedder.embed(texts).vectors, dtype=np.float32)
    embed_s = time.perf_counter() - started
    chunk_texts = [f"{heading_context(p)}\n{p.get('text', '')}" for p in payloads]
    return WindowVectors(ids, payloads, chunk_vectors, vectors, np.asarray(owner), token_count(settings, texts),
                         token_count(settings, chunk_texts), embed_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index-dir", type=Path, required=True, help="an index built by python -m bench.eval_index")
    parser.add_argument("--variant", action="append", required=True, metavar="SIZE,STRIDE,ALPHA",
                        help="sentences per window, sentences between window starts, the chunk vector's share")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a setting for this run")
    args = parser.parse_args(argv)
    from app.rag.embeddings import create_embedder
    from app.rag.vector_index import open_vector_index
    from app.settings import load_settings
    from bench.answer_quality import GRID_COLUMNS, CachedEmbedder, calibration_figures, evaluate, setting_value
    from bench.harness import markdown_table

    overrides = {name: setting_value(value) for name, value in (item.split("=", 1) for item in args.set)}
    settings = load_settings(_env_file=None, index_dir=args.index_dir, **overrides,
                             database_url="postgresql+psycopg://unused:unused@127.0.0.1:1/unused")  # pragma: allowlist secret
    embedder = create_embedder(settings)
    questions = CachedEmbedder(embedder)
    stores: dict[tuple[int, int], dict[str | None, WindowVectors]] = {}
    rows = []
    for spec in args.variant:
        size, stride, alpha = (float(part) for part in spec.split(","))
        key = (int(size), int(stride))
        if key not in stores:
            stores[key] = {c: window_vectors(settings, embedder, c, *key) for c in (None, "rust-book")}
        by_collection = stores[key]

        def open_index(settings_: Any, collection: str | None = None, _stores=by_collection, _alpha=alpha) -> Any:
            return WindowScoredIndex(open_vector_index(settings_, collection), _stores[collection], _alpha)

        outcomes = evaluate(settings, {"textbook": None, "rust": "rust-book"}, splits=("calibration", "regression"),
                            embedder=questions, open_index=open_index)
        figures = calibration_figures(outcomes)
        window_tokens = sum(s.window_tokens for s in by_collection.values())
        chunk_tokens = sum(s.chunk_tokens for s in by_collection.values())
        rows.append([f"windows {key[0]}/{key[1]}, alpha {alpha:g}",
                     *(f"{figures[c][0]:.3f}" if figures[c][0] is not None else "-" for c in GRID_COLUMNS),
                     f"{sum(len(s.ids) for s in by_collection.values())} / "
                     f"{sum(len(s.window_owner) for s in by_collection.values())}",
                     f"{window_tokens / chunk_tokens:.2f}x"])
        print(" | ".join(rows[-1]), file=sys.stderr)
    print(markdown_table(["variant (calibration)", *GRID_COLUMNS, "chunks / windows", "window tokens"], rows))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
