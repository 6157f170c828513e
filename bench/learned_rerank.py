"""A learned reranker of the fused candidates, fitted and measured on the calibration halves only (issue 14, ranking).

The service ranks a question's chunks by one hand-set fused score (app/rag/ranking.py) and keeps the best chunk of
each section (app/rag/retrieval.py). This probe asks whether a linear model over many features of the same
candidates ranks them better. For every calibration question (textbook en and ur, Rust book) it runs the service's
Retriever on a prebuilt evaluation index (bench/eval_index.py), records the dense and sparse lists the fusion read,
fuses them again to the top CANDIDATES chunks and describes each chunk by FEATURES: its fused score and rank, its
dense rank and cosine, its sparse rank and BM25, the share of the question's terms (plain and IDF-weighted) in its
text, heading path and page title, its page's and section's best and next-best fused scores and number of
candidates, its length and position. The label: the chunk is in a section the question expects (textbook), in a
chapter file it accepts (Rust book).

Models (numpy, scikit-learn, scipy; linear, so scoring a query's candidates is one dot product): pointwise logistic
regression, pairwise logistic regression (RankNet-like, on the differences of a right and a wrong candidate of one
question) and a listwise softmax over each question's candidates, one model for both books or one per book. Every
figure is out of fold: leave one chapter out (a textbook chapter with both its locales; a Rust-book chapter with all
its files), the model fitted on the other calibration chapters, scored on the left-out one; the baseline is the
service's fusion on the same questions.
Held-out questions are never loaded.

    python -m bench.eval_index .data/eval-index
    python -m bench.learned_rerank --index-dir .data/eval-index --cache .data/ltr-candidates.json --ablation
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

CANDIDATES = 40
TEXTBOOK_K = 5  # the service's retrieval_k
RUST_K = 10  # bench/answer_quality.py
FEATURES = (
    "fused score / best", "1 / fused rank", "1 / dense rank", "cosine (English)", "cosine - best (English)",
    "1 / sparse rank", "BM25 / best", "terms in text", "terms in text (IDF)", "terms in heading path (IDF)",
    "terms in page title (IDF)", "page best fused / best", "page 2nd fused / best", "page candidates (log)",
    "best of its page", "section candidates (log)", "section best fused / best", "chunk chars (log)",
    "chunk position in section", "page introduction",
)
FEATURE_GROUPS = {
    "fused": ("fused score / best", "1 / fused rank"),
    "dense": ("1 / dense rank", "cosine (English)", "cosine - best (English)"),
    "sparse": ("1 / sparse rank", "BM25 / best"),
    "term shares": ("terms in text", "terms in text (IDF)", "terms in heading path (IDF)", "terms in page title (IDF)"),
    "page": ("page best fused / best", "page 2nd fused / best", "page candidates (log)", "best of its page"),
    "section": ("section candidates (log)", "section best fused / best"),
    "shape": ("chunk chars (log)", "chunk position in section", "page introduction"),
}


# -- the questions (calibration halves only) -------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationQuestion:
    corpus: str  # "textbook" or "rust"
    locale: str
    question: str
    expected: tuple[str, ...]  # section URLs (textbook) or chapter-file page URLs (Rust book)
    chapter: str  # the cross-validation group

    @property
    def by_page(self) -> bool:
        return self.corpus == "rust"

    @property
    def k(self) -> int:
        return RUST_K if self.by_page else TEXTBOOK_K


def calibration_questions() -> list[CalibrationQuestion]:
    from bench.eval_offbook import CHAPTER_FILE_RE, load_rust_paraphrased
    from bench.eval_sets import load_textbook_ontopic

    items = [CalibrationQuestion("textbook", q.locale, q.question, q.expected_urls, q.chapter)
             for q in load_textbook_ontopic("calibration")]
    for q in load_rust_paraphrased("calibration"):
        match = CHAPTER_FILE_RE.match(q.expected_file)
        items.append(CalibrationQuestion("rust", "en", q.question, q.accepted_page_urls,
                                         f"rust-ch{int(match.group(1)):02d}" if match else q.expected_file))
    return items


# -- the candidates and their features -------------------------------------------------------------------------
class RecordingIndex:
    """The index, keeping the dense and sparse candidate lists of the last search the fusion read."""

    def __init__(self, index: Any, prefetch: int) -> None:
        self._index = index
        self._prefetch = prefetch
        self.dense: list[Any] = []
        self.sparse: list[Any] = []

    def search(self, request: Any) -> list[Any]:
        hits = self._index.search(request)
        if request.limit == self._prefetch and request.page_url is None:
            if request.mode == "dense":
                self.dense, self.sparse = hits, []  # a question without sparse terms searches no sparse list
            elif request.mode == "sparse":
                self.sparse = hits
        return hits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)


def document_frequencies(payloads: Sequence[dict[str, Any]]) -> dict[str, tuple[int, Counter[str]]]:
    """Per locale: the number of chunks and in how many of them each term occurs (text and heading path)."""
    from app.rag.sparse import terms_of_text

    by_locale: dict[str, tuple[int, Counter[str]]] = {}
    for payload in payloads:
        count, frequencies = by_locale.get(str(payload.get("locale", "")), (0, Counter()))
        frequencies.update(terms_of_text(f"{payload.get('text', '')} {' '.join(payload.get('heading_path', []))}"))
        by_locale[str(payload.get("locale", ""))] = (count + 1, frequencies)
    return by_locale


def term_weights(terms: set[str], chunks: int, frequencies: Counter[str]) -> dict[str, float]:
    """Each query term's IDF in the book; a term the book never uses weighs nothing (it separates no chunk)."""
    return {t: math.log(1 + chunks / frequencies[t]) if frequencies[t] else 0.0 for t in terms}


def _share(weights: dict[str, float], terms: frozenset[str]) -> float:
    total = sum(weights.values())
    return sum(w for t, w in weights.items() if t in terms) / total if total else 0.0


def candidate_features(fused: Sequence[Any], dense: Sequence[Any], sparse: Sequence[Any], query_terms: set[str],
                       weights: dict[str, float], *, dense_reliable: bool) -> np.ndarray:
    """FEATURES of each fused candidate (best fused first; hits carry their payloads), candidates x features."""
    from app.rag.sparse import terms_of_text

    if not fused:
        return np.zeros((0, len(FEATURES)))
    dense_rank = {h.id: r for r, h in enumerate(dense)}
    cosine = {h.id: h.score for h in dense}
    sparse_rank = {h.id: r for r, h in enumerate(sparse)}
    bm25 = {h.id: h.score for h in sparse}
    best_bm25 = max(bm25.values(), default=0.0)
    best_cosine = max(cosine.values(), default=0.0)
    floor_cosine = min(cosine.values(), default=0.0)  # a chunk the dense list did not return is at most this close
    reliable = 1.0 if dense_reliable else 0.0
    best_fused = fused[0].score or 1.0
    relative = [h.score / best_fused for h in fused]
    pages: dict[str, list[float]] = {}
    sections: dict[str, list[float]] = {}
    for hit, value in zip(fused, relative, strict=True):
        pages.setdefault(str(hit.payload.get("page_url", "")), []).append(value)
        sections.setdefault(str(hit.payload.get("url", "")), []).append(value)
    plain = dict.fromkeys(query_terms, 1.0)
    rows = []
    for rank, (hit, value) in enumerate(zip(fused, relative, strict=True)):
        payload = hit.payload
        text = str(payload.get("text", ""))
        page = pages[str(payload.get("page_url", ""))]
        section = sections[str(payload.get("url", ""))]
        chunk_cosine = cosine.get(hit.id, floor_cosine)
        text_terms = terms_of_text(text)
        rows.append([
            value, 1 / (1 + rank),
            1 / (1 + dense_rank[hit.id]) if hit.id in dense_rank else 0.0,
            reliable * chunk_cosine, reliable * (chunk_cosine - best_cosine),
            1 / (1 + sparse_rank[hit.id]) if hit.id in sparse_rank else 0.0,
            bm25.get(hit.id, 0.0) / best_bm25 if best_bm25 > 0 else 0.0,
            _share(plain, text_terms), _share(weights, text_terms),
            _share(weights, terms_of_text(" ".join(payload.get("heading_path", [])))),
            _share(weights, terms_of_text(str(payload.get("title", "")))),
            page[0], page[1] if len(page) > 1 else 0.0, math.log1p(len(page)), float(page[0] == value),
            math.log1p(len(section)), section[0],
            math.log1p(len(text)), float(min(int(payload.get("ordinal", 0) or 0), 5)),
            float(not payload.get("anchor")),
        ])
    return np.asarray(rows, dtype=float)


@dataclass
class QuestionCandidates:
    """One question's fused candidates: what each is (section, unit ranked), its label and features."""

    question: CalibrationQuestion
    sections: list[str]  # each candidate's section URL (one chunk per section is shown)
    units: list[str]  # what the question's figure ranks: the section URL (textbook) or the page URL (Rust book)
    labels: list[int]
    features: list[list[float]]
    baseline: list[str]  # the units as the service's Retriever ranked them
    feature_ms: float  # the features' computation for this question (its retrieval excluded)

    def ranked(self, scores: Sequence[float]) -> list[str]:
        """The units in the order `scores` (one per candidate; -inf: not read) puts them: best chunk per section,
        k sections."""
        order = sorted((i for i in range(len(scores)) if scores[i] > -math.inf), key=lambda i: (-scores[i], i))
        sections = list(dict.fromkeys(self.sections[i] for i in order))[:self.question.k]
        unit_of = dict(zip(self.sections, self.units, strict=True))
        return list(dict.fromkeys(unit_of[s] for s in sections))

    def fused_order(self) -> list[str]:
        """The units ranked by the fusion alone (the service reads k x CHUNKS_PER_SECTION_READ fused chunks)."""
        from app.rag.retrieval import CHUNKS_PER_SECTION_READ

        read = self.question.k * CHUNKS_PER_SECTION_READ
        return self.ranked([-i if i < read else -math.inf for i in range(len(self.labels))])


def collect(settings: Any, embedder: Any, collection: str | None,
            questions: Sequence[CalibrationQuestion]) -> list[QuestionCandidates]:
    """Every question retrieved as the service retrieves it, with its top CANDIDATES fused chunks described."""
    from app.rag.ranking import FusionWeights, fuse
    from app.rag.retrieval import Retriever, dense_is_reliable
    from app.rag.sparse import tokenize
    from app.rag.vector_index import open_vector_index
    from app.rag.vocabulary import BookVocabulary
    from bench.window_vectors import indexed_chunks

    _, payloads, _ = indexed_chunks(settings, collection)
    frequencies = document_frequencies(payloads)
    index = RecordingIndex(open_vector_index(settings, collection), settings.retrieval_prefetch)
    try:
        retriever = Retriever(embedder=embedder, index=index, settings=settings)
        vocabulary = BookVocabulary(index, settings.embedding_dimensions)
        found = []
        for q in questions:
            retrieval = retriever.retrieve(q.question, locale=q.locale, k=q.k)
            baseline = [c.page_url if q.by_page else c.url for c in retrieval.chunks]
            started = time.perf_counter()
            locale = retrieval.locale
            reliable = dense_is_reliable(settings, locale)
            weights = FusionWeights.from_settings(settings, locale, dense_reliable=reliable)
            fused = fuse(index.dense, index.sparse, weights, limit=CANDIDATES)
            fused = index.payloads(fused)
            query_terms = set(tokenize(vocabulary.expand(q.question)))
            chunks, df = frequencies.get(str(locale), (0, Counter()))
            features = candidate_features(fused, index.dense, index.sparse, query_terms,
                                          term_weights(query_terms, chunks, df), dense_reliable=reliable)
            feature_ms = (time.perf_counter() - started) * 1000
            sections = [str(h.payload.get("url", "")) or h.id for h in fused]
            units = [str(h.payload.get("page_url", "")) if q.by_page else s for h, s in zip(fused, sections, strict=True)]
            found.append(QuestionCandidates(q, sections, units, [int(u in q.expected) for u in units],
                                            features.tolist(), list(dict.fromkeys(baseline)), feature_ms))
    finally:
        index.close()
    return found


# -- models ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinearRanker:
    """score = ((x - mean) / scale) . weights over the kept features."""

    columns: tuple[int, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray

    def scores(self, features: np.ndarray) -> np.ndarray:
        if len(features) == 0:
            return np.zeros(0)
        return ((features[:, self.columns] - self.mean) / self.scale) @ self.weights


def _standardised(items: Sequence[QuestionCandidates], columns: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    stacked = np.vstack([np.asarray(q.features)[:, columns] for q in items if q.features])
    scale = stacked.std(axis=0)
    return stacked.mean(axis=0), np.where(scale > 0, scale, 1.0)


def fit_pointwise(items: Sequence[QuestionCandidates], columns: tuple[int, ...], c: float = 1.0) -> LinearRanker:
    """Logistic regression of the label on the features (questions without a right candidate teach nothing)."""
    from sklearn.linear_model import LogisticRegression

    useful = [q for q in items if any(q.labels)]
    mean, scale = _standardised(useful, columns)
    x = np.vstack([(np.asarray(q.features)[:, columns] - mean) / scale for q in useful])
    y = np.concatenate([q.labels for q in useful])
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(x, y)
    return LinearRanker(columns, mean, scale, model.coef_[0])


def fit_pairwise(items: Sequence[QuestionCandidates], columns: tuple[int, ...], c: float = 1.0) -> LinearRanker:
    """Logistic regression on (right - wrong) candidate pairs of each question, both orders, no intercept;
    each question weighs the same whatever its number of pairs."""
    from sklearn.linear_model import LogisticRegression

    useful = [q for q in items if any(q.labels) and not all(q.labels)]
    mean, scale = _standardised(useful, columns)
    differences, sample_weights = [], []
    for q in useful:
        x = (np.asarray(q.features)[:, columns] - mean) / scale
        labels = np.asarray(q.labels, dtype=bool)
        pairs = (x[labels][:, None, :] - x[~labels][None, :, :]).reshape(-1, len(columns))
        differences.append(pairs)
        sample_weights.append(np.full(len(pairs), 1.0 / len(pairs)))
    d = np.vstack(differences)
    w = np.concatenate(sample_weights)
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(
        np.vstack([d, -d]), np.r_[np.ones(len(d)), np.zeros(len(d))], sample_weight=np.r_[w, w] * len(useful))
    return LinearRanker(columns, mean, scale, model.coef_[0])


def fit_listwise(items: Sequence[QuestionCandidates], columns: tuple[int, ...], c: float = 1.0, *,
                 towards_fusion: bool = False) -> LinearRanker:
    """Softmax over each question's candidates, fitted to put the probability on its right ones (ListNet-like,
    what "right first" asks); L2 penalty 1/(2C) |w|^2. `towards_fusion`: the fused score's weight is not penalised,
    so a small C keeps the fusion's order and a larger one lets the other features move it."""
    from scipy.optimize import minimize

    useful = [q for q in items if any(q.labels) and not all(q.labels)]
    mean, scale = _standardised(useful, columns)
    xs = [(np.asarray(q.features)[:, columns] - mean) / scale for q in useful]
    rights = [np.asarray(q.labels, dtype=bool) for q in useful]
    penalty = np.ones(len(columns)) / c
    if towards_fusion and FEATURES.index("fused score / best") in columns:
        penalty[columns.index(FEATURES.index("fused score / best"))] = 0.0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, gradient = 0.5 * float(w @ (penalty * w)), penalty * w
        for x, right in zip(xs, rights, strict=True):
            s = x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            mass = p[right].sum()
            total -= math.log(mass)
            gradient = gradient + p @ x - (p[right] / mass) @ x[right]
        return total, gradient

    weights = minimize(loss, np.zeros(len(columns)), jac=True, method="L-BFGS-B").x
    return LinearRanker(columns, mean, scale, weights)


Fit = Callable[[Sequence[QuestionCandidates], tuple[int, ...]], LinearRanker]
FITS: dict[str, Fit] = {
    "pointwise": fit_pointwise, "pairwise": fit_pairwise, "listwise": fit_listwise,
    "pairwise C=0.1": lambda items, columns: fit_pairwise(items, columns, 0.1),
    "listwise C=0.1": lambda items, columns: fit_listwise(items, columns, 0.1),
    "listwise towards the fusion C=0.1": lambda items, columns: fit_listwise(items, columns, 0.1, towards_fusion=True),
    "listwise towards the fusion C=0.01": lambda items, columns: fit_listwise(items, columns, 0.01,
                                                                              towards_fusion=True),
}


def out_of_fold(items: Sequence[QuestionCandidates], fit: Fit, columns: tuple[int, ...], *,
                per_corpus: bool) -> list[list[str]]:
    """Each question's ranking by a model fitted without its chapter (and, per corpus, only on its own book)."""
    ranked: list[list[str] | None] = [None] * len(items)
    for chapter in sorted({q.question.chapter for q in items}):
        held = [i for i, q in enumerate(items) if q.question.chapter == chapter]
        corpus = items[held[0]].question.corpus
        train = [q for q in items if q.question.chapter != chapter and (not per_corpus or q.question.corpus == corpus)]
        model = fit(train, columns)
        for i in held:
            ranked[i] = items[i].ranked(model.scores(np.asarray(items[i].features)).tolist())
    return [r for r in ranked if r is not None]


# -- figures ---------------------------------------------------------------------------------------------------
FIGURES = ("section first (en)", "section first (ur)", "Rust chapter first", "Rust MRR")


def figures(items: Sequence[QuestionCandidates], ranked: Sequence[list[str]]) -> dict[str, tuple[float, int]]:
    def first(pairs: list[tuple[QuestionCandidates, list[str]]]) -> tuple[float, int]:
        return sum(bool(r) and r[0] in q.question.expected for q, r in pairs) / max(len(pairs), 1), len(pairs)

    pairs = list(zip(items, ranked, strict=True))
    textbook = {locale: [(q, r) for q, r in pairs if q.question.corpus == "textbook" and q.question.locale == locale]
                for locale in ("en", "ur")}
    rust = [(q, r) for q, r in pairs if q.question.corpus == "rust"]
    mrr = sum(next((1 / (i + 1) for i, u in enumerate(r) if u in q.question.expected), 0.0) for q, r in rust)
    return {"section first (en)": first(textbook["en"]), "section first (ur)": first(textbook["ur"]),
            "Rust chapter first": first(rust), "Rust MRR": (mrr / max(len(rust), 1), len(rust))}


def _row(name: str, values: dict[str, tuple[float, int]]) -> list[object]:
    return [name, *(f"{values[f][0]:.3f}" for f in FIGURES)]


def variants_table(items: Sequence[QuestionCandidates]) -> tuple[list[list[object]], dict[str, dict]]:
    from bench.harness import markdown_table

    every = tuple(range(len(FEATURES)))
    results = {"fusion (as shipped)": figures(items, [q.fused_order() for q in items])}
    for fit_name, fit in FITS.items():
        for per_corpus in (False, True):
            name = f"{fit_name}, {'one model per book' if per_corpus else 'one model for both books'}"
            results[name] = figures(items, out_of_fold(items, fit, every, per_corpus=per_corpus))
            print(" | ".join(map(str, _row(name, results[name]))), file=sys.stderr)
    n = results["fusion (as shipped)"]
    headers = ["ranking (calibration, out of fold)", *(f"{f} (n={n[f][1]})" for f in FIGURES)]
    return markdown_table(headers, [_row(name, values) for name, values in results.items()]), results


def ablation_table(items: Sequence[QuestionCandidates], fit_name: str, per_corpus: bool) -> str:
    """Out-of-fold figures with each feature group left out, and with each group alone."""
    from bench.harness import markdown_table

    rows = []
    every = tuple(range(len(FEATURES)))
    rows.append(_row("all features", figures(items, out_of_fold(items, FITS[fit_name], every, per_corpus=per_corpus))))
    for group, names in FEATURE_GROUPS.items():
        kept = tuple(i for i in every if FEATURES[i] not in names)
        rows.append(_row(f"without {group}", figures(items, out_of_fold(items, FITS[fit_name], kept,
                                                                         per_corpus=per_corpus))))
    for group, names in FEATURE_GROUPS.items():
        if group == "fused":
            continue
        kept = tuple(i for i in every if FEATURES[i] in names or FEATURES[i] in FEATURE_GROUPS["fused"])
        rows.append(_row(f"fused + {group} only", figures(items, out_of_fold(items, FITS[fit_name], kept,
                                                                             per_corpus=per_corpus))))
    return markdown_table([f"{fit_name}, {'per book' if per_corpus else 'both books'} (out of fold)", *FIGURES],
                          rows)


def weights_table(items: Sequence[QuestionCandidates], fit_name: str, per_corpus: bool) -> str:
    """The standardised weights of the model fitted on every calibration question (what the service would run)."""
    from bench.harness import markdown_table

    every = tuple(range(len(FEATURES)))
    corpora = ("textbook", "rust") if per_corpus else ("both",)
    models = {c: FITS[fit_name]([q for q in items if c in ("both", q.question.corpus)], every) for c in corpora}
    rows = [[FEATURES[i], *(f"{models[c].weights[j]:+.2f}" for c in corpora)] for j, i in enumerate(every)]
    return markdown_table(["feature (standardised weight)", *corpora], rows)


# -- cache -----------------------------------------------------------------------------------------------------
def save(items: Sequence[QuestionCandidates], path: Path) -> None:
    path.write_text("".join(json.dumps(asdict(q), ensure_ascii=False) + "\n" for q in items), encoding="utf-8")


def load(path: Path) -> list[QuestionCandidates]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        question = entry.pop("question")
        items.append(QuestionCandidates(CalibrationQuestion(**{**question, "expected": tuple(question["expected"])}),
                                        **entry))
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index-dir", type=Path, required=True, help="an index built by python -m bench.eval_index")
    parser.add_argument("--cache", type=Path,
                        help="the candidates and features as JSON lines: read if present, else collected and written")
    parser.add_argument("--ablation", action="store_true", help="also fit without each feature group")
    parser.add_argument("--model", choices=tuple(FITS), default="pairwise",
                        help="the model of the ablation and weights")
    parser.add_argument("--per-book", action="store_true", help="the ablation and weights with one model per book")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.cache and args.cache.exists():
        items = load(args.cache)
    else:
        from app.rag.embeddings import create_embedder
        from app.settings import load_settings

        settings = load_settings(_env_file=None, index_dir=args.index_dir,
                                 database_url="postgresql+psycopg://unused:unused@127.0.0.1:1/unused")  # pragma: allowlist secret
        embedder = create_embedder(settings)
        questions = calibration_questions()
        items = collect(settings, embedder, None, [q for q in questions if q.corpus == "textbook"])
        items += collect(settings, embedder, "rust-book", [q for q in questions if q.corpus == "rust"])
        if args.cache:
            save(items, args.cache)
    differing = sum(q.fused_order() != q.baseline for q in items)
    print(f"{len(items)} calibration questions; {sum(any(q.labels) for q in items)} with a right candidate in the "
          f"top {CANDIDATES}; re-fused ranking differs from the Retriever's on {differing}", file=sys.stderr)
    table, _ = variants_table(items)
    print(table)
    times = sorted(q.feature_ms for q in items)
    print(f"\nfeatures per query: median {statistics.median(times):.2f} ms, p95 {times[int(0.95 * len(times))]:.2f} ms "
          "(after the retrieval; the model is one dot product)")
    print("\n" + weights_table(items, args.model, args.per_book))
    if args.ablation:
        print("\n" + ablation_table(items, args.model, args.per_book))
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
