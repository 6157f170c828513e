"""Ingest benchmark on the Rust book (../shared/corpora/rust-book).

Measures: first ingest (chunks, chunks/s, seconds); a re-ingest with nothing changed (seconds, embeddings:
must be 0; the model must not even load); one chapter edited (only its chunks re-embedded). Baselines in
the same run: a full rebuild of the same tree (what a non-incremental ingest costs every time), the first
ingest with the torch runtime into a collection of its own (EMBEDDING_RUNTIME=torch: the ingest before the ONNX runtime),
the bare ONNX model embedding the same chunks outside Prefect (the limit), the same model with int8 weights (faster,
but its vectors differ: measured, not shipped) and an empty Prefect flow run (the fixed cost in every row). The
arithmetic table puts the rates in float32 GFLOP/s next to numpy's matrix product on the same cores (the ceiling).
Targets: first ingest <= 15 s (>= 100 chunks/s), unchanged re-ingest <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench.harness import (
    FIXED_COST_ROWS,
    bench_environment,
    empty_flow_seconds,
    load_note,
    machine_line,
    markdown_table,
    write_section,
)

EDITED_CHAPTER = "ch08-02-strings.md"
TARGET_FIRST_S, TARGET_NOOP_S = 15, 1


def with_runtime(runtime: str) -> None:
    from app.settings import get_settings

    os.environ["EMBEDDING_RUNTIME"] = runtime
    get_settings.cache_clear()


def rust_book_texts(tree: Path) -> list[str]:
    """The texts the ingest embeds for `tree`'s chunks (title and heading path included)."""
    from unittest import mock

    import tasks.textbook as textbook

    with mock.patch.object(textbook, "get_run_logger"):
        chunks = textbook.parse_and_chunk.fn(textbook.discover_chapters.fn(tree)).chunks
    return [c.embedding_text() for c in chunks]


def bare_encode(model_dir: Path, texts: list[str]) -> tuple[float, np.ndarray, tuple[int, ...]]:
    """Chunks/s of one ONNX model folder alone (no flow, no index) on `texts`, its vectors and each text's tokens."""
    from app.rag.embeddings import OnnxEmbedder

    embedder = OnnxEmbedder(model_dir)
    embedder.encode(texts[:8])
    started = time.perf_counter()
    vectors, token_counts = embedder.encode(texts)
    return len(texts) / (time.perf_counter() - started), vectors, token_counts


def gflop_per_chunk(token_counts: tuple[int, ...]) -> tuple[float, float]:
    """(mean tokens, GFLOP) per chunk for MiniLM-L6 (6 layers, hidden 384, FFN 1536) with these token counts (as
    the model ran them, truncated): 2 FLOP per multiply-add in the dense layers, plus the attention's QK^T and AV."""
    tokens = np.array(token_counts, dtype=np.float64)
    layers, hidden, ffn = 6, 384, 1536
    dense = layers * 2 * (4 * hidden * hidden + 2 * hidden * ffn) * tokens
    attention = layers * 2 * 2 * hidden * tokens**2
    return float(tokens.mean()), float((dense + attention).mean()) / 1e9


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """What the machine's cores do at best in float32: numpy's BLAS multiplying two size x size matrices."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = a.T.copy()
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def int8_copy(model_dir: Path, target: Path) -> Path:
    """The same model with int8 weights (onnxruntime's dynamic quantization): the one way to run it faster here."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    shutil.copytree(model_dir, target)
    quantize_dynamic(model_dir / "model.onnx", target / "model.onnx", weight_type=QuantType.QInt8)
    return target


def timed(fn, **kwargs) -> tuple[dict, float]:
    started = time.perf_counter()
    result = fn(**kwargs)
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared-dir", help="default: SHARED_DIR from settings (../shared)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update bench/RESULTS.md")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
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

        with_runtime("torch")
        torch_first, torch_first_s = timed(ingest_textbook, source=str(tree), collection="rust-book-torch")
        with_runtime("onnx")
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
        fixed_s, heartbeating_s = empty_flow_seconds()
        texts = rust_book_texts(tree)
        model_dir = get_settings().resolved_embedding_model_dir
        bare_rate, fp32, token_counts = bare_encode(model_dir, texts)
        int8_rate, int8, _ = bare_encode(int8_copy(model_dir, env.root / "int8"), texts)
        int8_cosines = (fp32 * int8).sum(axis=1)
        mean_tokens, gflop = gflop_per_chunk(token_counts)
        peak_gflops = matmul_gflops()

    first_met = first_s <= TARGET_FIRST_S and first["chunks_total"] / first_s >= 100
    noop_met = again_s <= TARGET_NOOP_S and again["embeddings_computed"] == 0
    rows = [
        ["baseline: first ingest, torch (before)", torch_first["chunks_total"], torch_first["embeddings_computed"],
         torch_first_s, torch_first["chunks_total"] / torch_first_s, "-", "-"],
        ["first ingest (onnx)", first["chunks_total"], first["embeddings_computed"], first_s,
         first["chunks_total"] / first_s, f"<= {TARGET_FIRST_S} s, >= 100 chunks/s", "yes" if first_met else "NO"],
        ["re-ingest, nothing changed", again["chunks_total"], again["embeddings_computed"], again_s, "-",
         f"<= {TARGET_NOOP_S} s, 0 embeddings", "yes" if noop_met else "NO"],
        [f"one chapter edited ({EDITED_CHAPTER})", edited["chunks_total"], edited["embeddings_computed"], edited_s, "-",
         "only its chunks", "yes" if 0 < edited["embeddings_computed"] <= 3 else "NO"],
        ["baseline: full rebuild (onnx)", rebuild["chunks_total"], rebuild["embeddings_computed"], rebuild_s,
         rebuild["chunks_total"] / rebuild_s, "-", "-"],
        ["limit: the bare ONNX model on the same chunks", len(texts), len(texts), len(texts) / bare_rate, bare_rate,
         "-", "-"],
        ["not shipped: the same model with int8 weights, bare", len(texts), len(texts), len(texts) / int8_rate, int8_rate,
         "-", "-"],
        [FIXED_COST_ROWS[0], "-", "-", fixed_s, "-", "-", "-"],
        [FIXED_COST_ROWS[1], "-", "-", heartbeating_s, "-", "-", "-"],
    ]
    table = markdown_table(["run", "chunks", "embeddings computed", "seconds", "chunks/s", "target", "met"], rows)
    ceiling = markdown_table(["arithmetic (float32, these 2 cores)", "GFLOP/s"], [
        [f"the bare model at {bare_rate:.1f} chunks/s x {gflop:.2f} GFLOP a chunk (mean {mean_tokens:.0f} tokens)",
         bare_rate * gflop],
        ["the target: 100 chunks/s", 100 * gflop],
        ["numpy's float32 matrix product, 2048 x 2048 (the cores' practical peak)", peak_gflops],
    ])
    notes = (f"Files: {first['files_seen']} ({first['files_skipped']} skipped). Seconds are the wall time of the "
             f"flow call (Prefect flow run included). Model loaded by the unchanged re-ingest: "
             f"{'yes' if model_loaded_by_noop else 'no'} (it was loaded for the first ingest: {model_loaded_before}). First "
             f"ingest: {first_s / torch_first_s:.2f}x the torch baseline's time; the flow reaches "
             f"{first['chunks_total'] / first_s / bare_rate:.0%} of the bare model's rate; the target's 100 chunks/s "
             f"is {100 / bare_rate:.1f}x that rate. The int8 copy runs at "
             f"{int8_rate / bare_rate:.1f}x the model's rate but its vectors are not the same (cosine to the shipped "
             f"model's: mean {float(int8_cosines.mean()):.3f}, min {float(int8_cosines.min()):.3f}; the issue asks "
             f">= 0.999 so existing indexes stay valid), so it is not shipped. The unchanged re-ingest took "
             f"{again_s:.2f} s, of which its flow body (read and parse the files, read the index state, plan: up to "
             "before the run is recorded) "
             f"{again['seconds']:.2f} s. The flows ran as `python -m flows.X` runs them, without heartbeats: an empty "
             f"flow run takes {fixed_s:.2f} s that way and {heartbeating_s:.2f} s with a worker's heartbeats (Prefect "
             "3.9.1's heartbeat thread sleeps in 1 s steps and a run waits for it to wake before it ends), so a run a "
             f"worker starts ends up to 1 s later. {load_note(load_before)}")
    notes += (f" Why 100 chunks/s is out of reach with vectors equal to torch's: the target needs {100 * gflop:.0f} "
              f"GFLOP/s of float32 arithmetic, {100 * gflop / peak_gflops:.1f}x what a plain matrix product reaches "
              f"on these cores ({peak_gflops:.0f}); the model already runs at {bare_rate * gflop / peak_gflops:.0%} of "
              "that.")
    print(table)
    print(ceiling)
    print(notes)
    if not args.no_write:
        write_section("Ingest: the Rust book", f"{machine_line()}\n\n{table}\n\n{ceiling}\n\n{notes}")
    return 0 if first_met and noop_met else 1


if __name__ == "__main__":
    sys.exit(main())
