"""Honest "not covered": precision and recall of `covered` through the real service, both answering backends.

On-topic questions are bench/eval/questions-*.yaml (English and Urdu); off-topic ones bench/eval/off_topic.yaml
(other fields, other programming languages, general knowledge; English and Urdu). A question counts as
covered when the service says `covered: true`; an answer that is not covered must come back with no sources.

The coverage thresholds (app/rag/coverage.py) are calibrated here on one half of both sets (every other
question of each locale and side) and reported on the other half; the service's defaults are then
measured on all questions with the extractive backend and the openai backend (the local
OpenAI-compatible test server, whose grounded reply quotes source [1]). The citation-support threshold
of app/rag/citations.py is calibrated on the book's own sentences. Target: precision and recall >= 0.95.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from bench.harness import bench_environment, machine_line, markdown_table, write_section
from bench.retrieval_quality import EVAL_DIR, load_eval_set

TARGET = 0.95


@dataclass(frozen=True)
class CoverageQuestion:
    question: str
    locale: str
    on_topic: bool


def load_coverage_set() -> list[CoverageQuestion]:
    items = [CoverageQuestion(q.question, q.locale, True) for q in load_eval_set()]
    items += [CoverageQuestion(e["question"], e["locale"], False)
              for e in yaml.safe_load((EVAL_DIR / "off_topic.yaml").read_text())]
    return items


def split(items: list[CoverageQuestion]) -> tuple[list[CoverageQuestion], list[CoverageQuestion]]:
    """(calibration, held-out): alternate within each (locale, side) group, so both halves have every kind."""
    calibration, held_out = [], []
    for key in sorted({(q.locale, q.on_topic) for q in items}):
        group = [q for q in items if (q.locale, q.on_topic) == key]
        calibration += group[0::2]
        held_out += group[1::2]
    return calibration, held_out


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    true_positives: int
    false_positives: int
    false_negatives: int
    uncovered_with_sources: int
    misses: tuple[str, ...]

    def meets(self, target: float = TARGET) -> bool:
        return self.precision >= target and self.recall >= target and self.uncovered_with_sources == 0


def score(items: Iterable[CoverageQuestion], answer: Callable[[CoverageQuestion], tuple[bool, int]]) -> Scores:
    """`answer(q)` -> (covered, number of sources)."""
    tp = fp = fn = leaked = 0
    misses = []
    for item in items:
        covered, sources = answer(item)
        tp += covered and item.on_topic
        fp += covered and not item.on_topic
        fn += not covered and item.on_topic
        leaked += (not covered) and sources > 0
        if covered != item.on_topic:
            misses.append(f"{'on' if item.on_topic else 'off'}/{item.locale}: {item.question}")
    return Scores(precision=tp / (tp + fp) if tp + fp else 1.0, recall=tp / (tp + fn) if tp + fn else 1.0,
                  true_positives=tp, false_positives=fp, false_negatives=fn, uncovered_with_sources=leaked,
                  misses=tuple(misses))


def service_answer(client: Any) -> Callable[[CoverageQuestion], tuple[bool, int]]:
    def ask(item: CoverageQuestion) -> tuple[bool, int]:
        response = client.post("/v1/chat", json={"question": item.question, "locale": item.locale})
        response.raise_for_status()
        body = response.json()
        return body["covered"], len(body["sources"])

    return ask


# -- calibration ---------------------------------------------------------------------------------------
def _thresholds(values: Iterable[float]) -> list[float]:
    ordered = sorted(set(values))
    return [(a + b) / 2 for a, b in zip(ordered, ordered[1:], strict=False)] or ordered


def calibrate(features: list[tuple[CoverageQuestion, Any]], *, min_sparse_score: float) -> dict[str, float]:
    """Thresholds that classify the calibration half best; ties go to the widest margin.

    The best BM25 score is not calibrated, only kept as a floor: it grows with the number of query terms, so a
    threshold fitted on full questions would reject short ones ("ZMP کیا ہے؟" scores 6).
    """
    dense_side = [(q, r) for q, r in features if r.dense_reliable and r.top_dense_score is not None]
    sparse_side = [(q, r) for q, r in features if not (r.dense_reliable and r.top_dense_score is not None)]

    def accuracy(rows: list[tuple[CoverageQuestion, Any]], covered: Callable[[Any], bool]) -> int:
        return sum(covered(r) == q.on_topic for q, r in rows)

    def margin(values: list[float], threshold: float) -> float:
        return min((abs(v - threshold) for v in values), default=0.0)

    dense_values = [r.top_dense_score for _, r in dense_side]
    best_dense = max(_thresholds(dense_values), key=lambda t: (
        accuracy(dense_side, lambda r: r.top_dense_score >= t), margin(dense_values, t)))
    terms = [r.query_terms_matched for _, r in sparse_side]
    best_terms = max(_thresholds(terms), key=lambda t: (
        accuracy(sparse_side, lambda r: r.query_terms_matched >= t and (r.top_sparse_score or 0) >= min_sparse_score),
        margin(terms, t)))
    return {"min_dense_score": round(best_dense, 3), "min_query_terms_matched": round(best_terms, 3),
            "min_sparse_score": min_sparse_score}


def citation_support_calibration(chunks: list[dict[str, Any]], seed: int = 7) -> tuple[list[list[object]], float]:
    """Support of a sentence by its own chunk (reworded in part) and by chunks of other chapters.

    Rewording replaces a share of the sentence's content words with words the chunk does not contain, as a
    paraphrasing model would; the threshold keeps out 99% of the sentences cited to another chapter's chunk.
    """
    from app.rag.answering import _prose_sentences
    from app.rag.chunking import chapter_of
    from app.rag.citations import support
    from app.rag.sparse import tokenize

    rng = random.Random(seed)
    sentences = [(c, s) for c in chunks for s in _prose_sentences(c["text"]) if len(set(tokenize(s))) >= 4]
    rng.shuffle(sentences)
    sentences = sentences[:400]
    negatives = []
    for chunk, sentence in sentences:
        others = [c for c in chunks
                  if chapter_of(c["page_url"]) != chapter_of(chunk["page_url"]) and c["locale"] == chunk["locale"]]
        negatives += [support(sentence, rng.choice(others)["text"]) for _ in range(3)]
    negatives.sort()
    threshold = round(min(0.9, negatives[int(0.99 * (len(negatives) - 1))] + 0.05), 2)
    rows: list[list[object]] = []
    for reworded in (0.0, 0.25, 0.4, 0.6):
        values = []
        for chunk, sentence in sentences:
            words = sentence.split()
            for i in rng.sample(range(len(words)), int(reworded * len(words))):
                words[i] = f"paraphrase{i}"
            values.append(support(" ".join(words), chunk["text"]))
        rows.append([f"own chunk, {int(reworded * 100)}% of words reworded", len(values),
                     statistics.median(values), sum(v >= threshold for v in values) / len(values)])
    rows.append(["a chunk of another chapter", len(negatives), statistics.median(negatives),
                 sum(v >= threshold for v in negatives) / len(negatives)])
    return rows, threshold


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only, do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    questions = load_coverage_set()
    calibration_half, held_out = split(questions)
    os.environ.setdefault("RATE_LIMIT_ANONYMOUS", "1000000")  # one client asks every question
    with bench_environment() as env:
        from fastapi.testclient import TestClient

        from app.main import create_app
        from app.rag.coverage import CoveragePolicy
        from app.rag.embeddings import create_embedder
        from app.rag.retrieval import Retriever
        from app.rag.vector_index import open_vector_index
        from app.settings import PROJECT_ROOT, get_settings, load_settings
        from flows.ingest_textbook import ingest_textbook
        from tests.support.openai_server import FakeOpenAI

        ingest_textbook(source=str(PROJECT_ROOT / "website"))
        settings = get_settings()
        index = open_vector_index(settings)
        retriever = Retriever(embedder=create_embedder(settings), index=index, settings=settings)
        features = [(q, retriever.retrieve(q.question, locale=q.locale, k=settings.retrieval_k)) for q in questions]
        chunks = [h.payload for h in _all_chunks(index, settings.embedding_dimensions)]
        index.close()
        by_question = dict(features)
        calibrated = calibrate([(q, by_question[q]) for q in calibration_half], min_sparse_score=settings.min_sparse_score)
        # The service's policy (unknown terms, the lexical rule) with this bench's three calibrated thresholds.
        policy = dataclasses.replace(CoveragePolicy.from_settings(settings), **{
            k: calibrated[k] for k in ("min_dense_score", "min_sparse_score", "min_query_terms_matched")})
        held_out_scores = score(held_out, lambda q: (policy.covers(by_question[q]), 0))
        calibration_scores = score(calibration_half, lambda q: (policy.covers(by_question[q]), 0))
        support_rows, support_threshold = citation_support_calibration(chunks)

        service_rows = []
        with TestClient(create_app(settings)) as client:
            service_rows.append(("extractive", score(questions, service_answer(client))))
        fake = FakeOpenAI().start()
        try:
            openai_settings = load_settings(database_url=env.database_url, answer_backend="openai",
                                            openai_api_key="sk-test", openai_base_url=fake.base_url,
                                            openai_max_retries=0)
            with TestClient(create_app(openai_settings)) as client:
                service_rows.append(("openai (local test server)", score(questions, service_answer(client))))
        finally:
            fake.stop()

    on = [q for q in questions if q.on_topic]
    off = [q for q in questions if not q.on_topic]
    counts = (f"{len(on)} on-topic ({sum(q.locale == 'ur' for q in on)} Urdu) and {len(off)} off-topic "
              f"({sum(q.locale == 'ur' for q in off)} Urdu) questions; calibration half {len(calibration_half)}, "
              f"held-out half {len(held_out)}.")
    thresholds = markdown_table(
        ["threshold", "calibrated (calibration half)", "service default"],
        [[name, value, getattr(settings, name)] for name, value in calibrated.items()],
    )
    halves = markdown_table(
        ["half", "precision", "recall", "false positives", "false negatives"],
        [[name, s.precision, s.recall, s.false_positives, s.false_negatives]
         for name, s in (("calibration", calibration_scores), ("held-out", held_out_scores))],
    )
    service = markdown_table(
        ["answer backend", "precision", "recall", "not covered but with sources", "target >= 0.95"],
        [[name, s.precision, s.recall, s.uncovered_with_sources, "met" if s.meets() else "NOT met"]
         for name, s in service_rows],
    )
    support_table = markdown_table(["sentence cited to", "pairs", "median support", f"share >= {support_threshold}"],
                                   support_rows)
    misses = sorted({m for _, s in service_rows for m in s.misses} | set(held_out_scores.misses))
    body = "\n\n".join([
        machine_line(), counts,
        "Thresholds calibrated on the calibration half (dense similarity where the model knows the language; "
        "share of query terms the book uses and best BM25 score elsewhere):", thresholds,
        "Calibrated thresholds on each half (held-out = not seen by the calibration):", halves,
        "Service defaults, all questions, through `POST /v1/chat`:", service,
        "Misclassified: " + ("; ".join(misses) if misses else "none."),
        "Why these signals: MiniLM scores English questions well (on-topic >= 0.47, off-topic <= 0.34 here), "
        "but its scores for Urdu are noise (off-topic Urdu questions reach 0.82 against Urdu chunks), so Urdu "
        "is judged by which of its terms the book uses (the retrieved chunks plus the 20 best BM25 hits): "
        "off-topic questions carry words the book never uses (biryani, diabetes, cricket). The absolute BM25 "
        "score is only a floor, because it grows with the question's length (\"ZMP کیا ہے؟\" scores 6). Known "
        "limit: a short Urdu question made of words the book happens to use is judged covered (\"کرکٹ کا ورلڈ "
        "کپ کب ہوگا؟\": world, cup, when occur in the book; an xfail in tests/app/test_covered_quality.py). "
        "With OpenAI embeddings (multilingual) the dense rule applies to Urdu as well.",
        f"Citation support (app/rag/citations.py, openai answers): a cited sentence is kept when at least "
        f"{support_threshold} of its content terms occur in its source (calibrated: 99% of book sentences cited "
        f"to another chapter's chunk fall below, plus 0.05; service default "
        f"{settings.citation_min_support}):", support_table,
    ])
    print(body)
    if not args.no_write:
        write_section("Covered or not: honest answers", body)
    return 0 if all(s.meets() for _, s in service_rows) else 1


def _all_chunks(index: Any, dimensions: int) -> list[Any]:
    """Every chunk of the live index, through the search interface (one sparse-free dense query per locale)."""
    from app.rag.vector_index import SearchRequest

    hits = []
    for locale in ("en", "ur"):
        hits += index.search(SearchRequest(dense=[0.0] * (dimensions - 1) + [1.0], sparse=None, limit=10_000, locale=locale,
                                           mode="dense"))
    return hits


if __name__ == "__main__":
    sys.exit(main())
