"""Retrieval quality on the site's textbook: hit@1, hit@5 and MRR for dense, sparse and hybrid.

The evaluation set is bench/eval/questions-*.yaml (questions in English and Urdu, each with the page that
answers it). A hit is a retrieved chunk on the expected page. Dense and sparse alone are the baselines
measured in the same run; hybrid uses the service's settings (weighted RRF). Target: hybrid hit@5 >= 0.9.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.harness import bench_environment, machine_line, markdown_table, write_section

EVAL_DIR = Path(__file__).resolve().parent / "eval"

@dataclass(frozen=True)
class EvalQuestion:
    question: str
    locale: str
    expected_url: str

def load_eval_set() -> list[EvalQuestion]:
    items: list[EvalQuestion] = []
    for path in sorted(EVAL_DIR.glob("questions-*.yaml")):
        for entry in yaml.safe_load(path.read_text()) or []:
            items.append(EvalQuestion(entry["question"], entry["locale"], entry["expected_url"]))
    return items

def evaluate(retriever, questions: list[EvalQuestion], mode: str, k: int = 5) -> dict[str, float]:
    hit1 = hit5 = reciprocal = 0.0
    for item in questions:
        retrieval = retriever.retrieve(item.question, locale=item.locale, k=k, mode=mode)
        pages = [c.page_url for c in retrieval.chunks]
        rank = next((i for i, page in enumerate(pages) if page == item.expected_url), None)
        hit1 += rank == 0
        hit5 += rank is not None and rank < 5
        reciprocal += 1 / (rank + 1) if rank is not None else 0
    n = len(questions)
    return {"hit@1": hit1 / n, "hit@5": hit5 / n, "mrr": reciprocal / n}

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only, do not update bench/RESULTS.md")
    parser.add_argument("--grid", action="store_true", help="also try other fusion weights (for tuning)")
    args = parser.parse_args(argv)
    questions = load_eval_set()
    with bench_environment() as env:
        from app.rag.embeddings import create_embedder
        from app.rag.retrieval import Retriever
        from app.rag.vector_index import open_vector_index
        from app.settings import PROJECT_ROOT, get_settings
        from flows.ingest_textbook import ingest_textbook

        del env
        ingest_textbook(source=str(PROJECT_ROOT / "website"))
        settings = get_settings()
        index = open_vector_index(settings)
        embedder = create_embedder(settings)
        rows = []
        for locale_name, subset in (("all", questions), ("en", [q for q in questions if q.locale == "en"]),
                                    ("ur", [q for q in questions if q.locale == "ur"])):
            for mode in ("dense", "sparse", "hybrid"):
                scores = evaluate(Retriever(embedder=embedder, index=index, settings=settings), subset, mode)
                rows.append([locale_name, len(subset), mode, scores["hit@1"], scores["hit@5"], scores["mrr"]])
        grid_rows = []
        if args.grid:
            for dense_weight, sparse_weight, rrf_k in [(1, 1, 60), (1, 2, 60), (2, 1, 60), (1, 1, 20), (1, 1, 10),
                                                       (1, 1, 5), (1, 1.5, 10), (1.5, 1, 10), (1, 1, 2)]:
                tuned = settings.model_copy(update={"dense_weight": dense_weight, "sparse_weight": sparse_weight,
                                                    "rrf_k": rrf_k})
                scores = evaluate(Retriever(embedder=embedder, index=index, settings=tuned), questions, "hybrid")
                grid_rows.append([dense_weight, sparse_weight, rrf_k, scores["hit@1"], scores["hit@5"], scores["mrr"]])
        index.close()
    table = markdown_table(["questions", "n", "retrieval", "hit@1", "hit@5", "MRR"], rows)
    hybrid = next(r for r in rows if r[0] == "all" and r[2] == "hybrid")
    dense = next(r for r in rows if r[0] == "all" and r[2] == "dense")
    verdict = (f"Hybrid hit@5 {hybrid[4]:.3f} (target >= 0.9: {'met' if hybrid[4] >= 0.9 else 'NOT met'}); "
               f"hybrid vs dense alone: MRR {hybrid[5]:.3f} vs {dense[5]:.3f}. Fusion: weighted RRF, dense weight "
               f"{settings.dense_weight}, sparse weight {settings.sparse_weight}, k={settings.rrf_k}.")
    print(table)
    print(verdict)
    body = f"{machine_line()}\n\n{len(questions)} questions (bench/eval/).\n\n{table}\n\n{verdict}"
    if grid_rows:
        grid = markdown_table(["dense weight", "sparse weight", "rrf k", "hit@1", "hit@5", "MRR"], grid_rows)
        print(grid)
        body += f"\n\nFusion weights tried (all questions, hybrid):\n\n{grid}"
    if not args.no_write:
        write_section("Retrieval quality: the site's textbook", body)
    return 0

if __name__ == "__main__":
    sys.exit(main())
