"""Ingest benchmark on the Rust book (../shared/corpora/rust-book).

Measures: first ingest (chunks, chunks/s, seconds); a re-ingest with nothing changed (seconds, embeddings:
must be 0; the model must not even load); one chapter edited (only its chunks re-embedded). Baseline in
the same run: a full rebuild of the same tree (what a non-incremental ingest costs every time).
Targets: first ingest <= 120 s, unchanged re-ingest <= 5 s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from bench.harness import bench_environment, machine_line, markdown_table, write_section

EDITED_CHAPTER = "ch08-02-strings.md"


def timed(fn, **kwargs) -> tuple[dict, float]:
    started = time.perf_counter()
    result = fn(**kwargs)
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared-dir", help="default: SHARED_DIR from settings (../shared)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update bench/RESULTS.md")
    args = parser.parse_args(argv)

    with bench_environment() as env:
        from app.rag import embeddings
        from app.settings import get_settings
        from flows.ingest_textbook import ingest_textbook

        shared = Path(args.shared_dir) if args.shared_dir else get_settings().shared_dir
        corpus = shared / "corpora" / "rust-book"
        if not corpus.is_dir():
            print(f"error: {corpus} not found (set --shared-dir or SHARED_DIR)", file=sys.stderr)
            return 2
        tree = env.root / "rust-book"
        shutil.copytree(corpus, tree)

        first, first_s = timed(ingest_textbook, source=str(tree))
        model_loaded_before = any(e.loaded for e in embeddings._local_embedders.values())
        embeddings._local_embedders.clear()  # prove the unchanged run does not load the model
        again, again_s = timed(ingest_textbook, source=str(tree))
        model_loaded_by_noop = any(e.loaded for e in embeddings._local_embedders.values())

        chapter = tree / EDITED_CHAPTER
        # One sentence added at the end of one section: only that section's last chunk changes.
        chapter.write_text(chapter.read_text().replace("\n\n### ", " This sentence was added by the benchmark.\n\n### ", 1))
        edited, edited_s = timed(ingest_textbook, source=str(tree))
        rebuild, rebuild_s = timed(ingest_textbook, source=str(tree), full_rebuild=True)

    rows = [
        ["first ingest", first["chunks_total"], first["embeddings_computed"], first_s,
         first["chunks_total"] / first_s, "<= 120 s", "yes" if first_s <= 120 else "NO"],
        ["re-ingest, nothing changed", again["chunks_total"], again["embeddings_computed"], again_s, "-",
         "<= 5 s, 0 embeddings", "yes" if again_s <= 5 and again["embeddings_computed"] == 0 else "NO"],
        [f"one chapter edited ({EDITED_CHAPTER})", edited["chunks_total"], edited["embeddings_computed"], edited_s, "-",
         "only its chunks", "yes" if 0 < edited["embeddings_computed"] <= 3 else "NO"],
        ["baseline: full rebuild", rebuild["chunks_total"], rebuild["embeddings_computed"], rebuild_s,
         rebuild["chunks_total"] / rebuild_s, "-", "-"],
    ]
    table = markdown_table(["run", "chunks", "embeddings computed", "seconds", "chunks/s", "target", "met"], rows)
    notes = (f"Files: {first['files_seen']} ({first['files_skipped']} skipped). Seconds are the wall time of the "
             f"flow call (Prefect flow run included). Model loaded by the unchanged re-ingest: "
             f"{'yes' if model_loaded_by_noop else 'no'} (it was loaded for the first ingest: {model_loaded_before}).")
    print(table)
    print(notes)
    if not args.no_write:
        write_section("Ingest: the Rust book", f"{machine_line()}\n\n{table}\n\n{notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
