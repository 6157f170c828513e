"""Build the evaluation indexes (the site and the Rust book) into a folder, for bench/answer_quality.py --index-dir.

The same chunker, embedder and index writer as the ingest flow, without its Prefect run and Postgres record:
what a tuning loop needs when each chunking variant is a fresh index (`--max-chars`, `--min-chars`).

    python -m bench.eval_index .data/eval-index --max-chars 700
    python -m bench.answer_quality --index-dir .data/eval-index --calibration-only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from app.rag.chunking import DEFAULT_MAX_CHARS, DEFAULT_MIN_CHARS

EMBED_BATCH = 128


def build_collection(settings, source: Path, collection: str | None, *, max_chars: int, min_chars: int) -> int:
    """Chunk, embed and publish one source tree as a fresh generation; the number of chunks written."""
    from prefect.logging import disable_run_logger

    from app.rag.embeddings import create_embedder
    from app.rag.sparse import document_vector
    from app.rag.vector_index import IndexedChunk, open_index_writer
    from tasks.textbook import discover_chapters, parse_and_chunk, source_identity

    with disable_run_logger():
        chunks = parse_and_chunk.fn(discover_chapters.fn(source), max_chars=max_chars, min_chars=min_chars).chunks
    embedder = create_embedder(settings)
    indexed: list[IndexedChunk] = []
    for start in range(0, len(chunks), EMBED_BATCH):
        batch = chunks[start:start + EMBED_BATCH]
        vectors = embedder.embed([c.embedding_text() for c in batch]).vectors
        indexed += [IndexedChunk(id=c.id, dense=v, sparse=document_vector(c.embedding_text()), payload=c.payload())
                    for c, v in zip(batch, vectors, strict=True)]
    writer = open_index_writer(settings, collection)
    generation = writer.begin(full_rebuild=True, source_identity=source_identity(source),
                              embedding_model=settings.resolved_embedding_model)
    try:
        for start in range(0, len(indexed), 512):
            generation.upsert(indexed[start:start + 512])
        generation.publish()
    except BaseException:
        generation.discard()
        raise
    return len(indexed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("index_dir", type=Path, help="the folder to build the collections in")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="a chunk's largest size")
    parser.add_argument("--min-chars", type=int, default=DEFAULT_MIN_CHARS,
                        help="a section's last chunk shorter than half this joins the one before it")
    args = parser.parse_args(argv)
    from app.settings import PROJECT_ROOT, load_settings

    settings = load_settings(_env_file=None, index_dir=args.index_dir.resolve(),
                             database_url="postgresql+psycopg://unused:unused@127.0.0.1:1/unused")  # pragma: allowlist secret
    for source, collection in ((PROJECT_ROOT / "website", None),
                               (settings.shared_dir / "corpora" / "rust-book", "rust-book")):
        started = time.perf_counter()
        count = build_collection(settings, source, collection, max_chars=args.max_chars, min_chars=args.min_chars)
        print(f"{settings.collection_name(collection)}: {count} chunks in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
