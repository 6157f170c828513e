"""Answer quality on questions nobody tuned on: ranking and "covered" per set and split, calibration beside held-out.

Sets (bench/eval/, each split by chapter or topic group so nothing tuned on one half has seen the other):
- textbook-ontopic.yaml (bench/eval_sets.py): right section first (per locale), first chat source right,
  covered rate;
- textbook-neartopic.yaml (bench/eval_offbook.py): not-covered rate (questions next to the book it does not answer);
- rust-book-paraphrased.yaml (bench/eval_offbook.py): right chapter first and MRR over the Rust book's index;
- regression: the old 48 on-topic questions (questions-part*.yaml: right section first, covered) and the old
  off-topic set (off_topic.yaml: not covered).

Each question is retrieved once with the service's Retriever and answered by the service's answerer (the
local model and extractive answers, the defaults), in process: what `/v1/chat` and `/v1/search` return, without
the Postgres writes around them (tests/app/test_covered_quality.py asserts the floors through the service).
Thresholds and rules were chosen on the calibration halves (and the old sets) only; held-out is reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.harness import bench_environment, machine_line, markdown_table, write_section

EVAL_DIR = Path(__file__).resolve().parent / "eval"
SPLITS = ("calibration", "held-out")
RUST_K = 10
TARGETS = {
    "section first (en)": 0.92, "section first (ur)": 0.92, "on-topic covered": 0.95,
    "near-topic not covered": 0.90, "old off-topic not covered": 0.95, "old on-topic covered": 0.95,
    "Rust chapter first": 0.90, "Rust MRR": 0.93,
}


@dataclass(frozen=True)
class Outcome:
    """One question's result: what ranked first, what the chat answered."""

    set_name: str
    split: str
    locale: str
    question: str
    expected: tuple[str, ...]  # section URLs (textbook) or page URLs (Rust book); empty: the book does not answer it
    ranked: tuple[str, ...]  # section URLs (textbook) or page URLs (Rust book), best first
    covered: bool
    first_source: str | None  # the chat answer's first source, when covered
    evidence: dict[str, Any] = field(default_factory=dict)  # what the coverage decision read (for --dump)
    style: str = ""  # the on-topic set's style of asking (short, acronym, loanword, ...)


def rate(outcomes: list[Outcome], hit: Callable[[Outcome], bool]) -> tuple[float | None, int]:
    return (sum(map(hit, outcomes)) / len(outcomes) if outcomes else None), len(outcomes)


def section_first(o: Outcome) -> bool:
    return bool(o.ranked) and o.ranked[0] in o.expected


def reciprocal_rank(o: Outcome) -> float:
    return next((1 / (i + 1) for i, url in enumerate(o.ranked) if url in o.expected), 0.0)


def metrics(outcomes: list[Outcome]) -> dict[str, tuple[float | None, int]]:
    """Every target metric over one split's outcomes."""
    by = {name: [o for o in outcomes if o.set_name == name] for name in
          ("ontopic", "neartopic", "rust", "old-ontopic", "old-offtopic")}
    on = by["ontopic"]
    return {
        "section first (en)": rate([o for o in on if o.locale == "en"], section_first),
        "section first (ur)": rate([o for o in on if o.locale == "ur"], section_first),
        "first chat source right": rate(on, lambda o: o.covered and o.first_source in o.expected),
        "on-topic covered": rate(on, lambda o: o.covered),
        "on-topic covered (en)": rate([o for o in on if o.locale == "en"], lambda o: o.covered),
        "on-topic covered (ur)": rate([o for o in on if o.locale == "ur"], lambda o: o.covered),
        "near-topic not covered": rate(by["neartopic"], lambda o: not o.covered),
        "near-topic not covered (en)": rate([o for o in by["neartopic"] if o.locale == "en"], lambda o: not o.covered),
        "near-topic not covered (ur)": rate([o for o in by["neartopic"] if o.locale == "ur"], lambda o: not o.covered),
        "Rust chapter first": rate(by["rust"], section_first),
        "Rust MRR": (sum(map(reciprocal_rank, by["rust"])) / len(by["rust"]) if by["rust"] else None, len(by["rust"])),
        "old on-topic section first": rate(by["old-ontopic"], section_first),
        "old on-topic covered": rate(by["old-ontopic"], lambda o: o.covered),
        "old off-topic not covered": rate(by["old-offtopic"], lambda o: not o.covered),
    }


# -- the questions ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    set_name: str
    split: str
    locale: str
    question: str
    expected: tuple[str, ...]
    style: str = ""


def textbook_questions() -> list[Question]:
    from bench.eval_offbook import load_textbook_neartopic
    from bench.eval_sets import load_textbook_ontopic

    items = [Question("ontopic", q.split, q.locale, q.question, q.expected_urls, q.style)
             for q in load_textbook_ontopic()]
    items += [Question("neartopic", q.split, q.locale, q.question, ()) for q in load_textbook_neartopic()]
    for path in sorted(EVAL_DIR.glob("questions-*.yaml")):
        items += [Question("old-ontopic", "regression", e["locale"], e["question"], (e["expected_url"],))
                  for e in yaml.safe_load(path.read_text()) or []]
    items += [Question("old-offtopic", "regression", e["locale"], e["question"], ())
              for e in yaml.safe_load((EVAL_DIR / "off_topic.yaml").read_text())]
    return items


def rust_questions() -> list[Question]:
    from bench.eval_offbook import load_rust_paraphrased

    return [Question("rust", q.split, "en", q.question, q.accepted_page_urls) for q in load_rust_paraphrased()]


PAGE_LEVEL_SETS = ("rust", "old-ontopic")  # their expected answers are pages (a chapter file; the old set's page)


def answer_all(questions: Iterable[Question], retriever: Any, answerer: Any, *, k: int) -> list[Outcome]:
    outcomes = []
    for q in questions:
        retrieval = retriever.retrieve(q.question, locale=q.locale, k=k)
        by_page = q.set_name in PAGE_LEVEL_SETS
        ranked = [c.page_url if by_page else c.url for c in retrieval.chunks]
        if by_page:
            ranked = list(dict.fromkeys(ranked))
        answer = answerer.answer(q.question, retrieval, [], q.locale)
        first = None
        if answer.covered and retrieval.chunks:
            order = answer.source_order if answer.source_order is not None else list(range(len(retrieval.chunks)))
            first = retrieval.chunks[order[0]].url if order else None
        outcomes.append(Outcome(q.set_name, q.split, q.locale, q.question, q.expected, tuple(ranked), answer.covered,
                                first, coverage_evidence(retrieval), q.style))
    return outcomes


class CachedEmbedder:
    """An embedder that embeds each text once: a tuning grid asks the same questions under every variant."""

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self._cache: dict[tuple[str, ...], Any] = {}
        self.model_name = embedder.model_name

    def embed(self, texts: list[str]) -> Any:
        key = tuple(texts)
        if key not in self._cache:
            self._cache[key] = self._embedder.embed(texts)
        return self._cache[key]


def coverage_evidence(retrieval: Any) -> dict[str, Any]:
    scores = [c.score for c in retrieval.chunks]
    return {
        "dense": retrieval.top_dense_score, "sparse": retrieval.top_sparse_score,
        "share": retrieval.query_terms_matched, "terms": retrieval.query_terms,
        "unknown": list(retrieval.unknown_terms),
        "fused": scores[0] if scores else None, "margin": scores[0] - scores[1] if len(scores) > 1 else None,
    }


def evaluate(settings: Any, collections: dict[str, str | None], *, rust: bool = True,
             splits: tuple[str, ...] = (*SPLITS, "regression"), embedder: Any = None,
             open_index: Callable[..., Any] | None = None) -> list[Outcome]:
    """Every question of the given splits (default: all), answered as the service answers it (`open_index`: the
    index to read instead of the configured one, e.g. a probe's variant of it: bench/window_vectors.py)."""
    from app.rag.answering import create_answerer
    from app.rag.embeddings import create_embedder
    from app.rag.retrieval import Retriever
    from app.rag.vector_index import open_vector_index

    embedder = embedder or create_embedder(settings)
    answerer = create_answerer(settings)
    open_index = open_index or open_vector_index
    index = open_index(settings, collections["textbook"])
    try:
        retriever = Retriever(embedder=embedder, index=index, settings=settings)
        outcomes = answer_all([q for q in textbook_questions() if q.split in splits], retriever,
                              answerer, k=settings.retrieval_k)
    finally:
        index.close()
    if rust and collections.get("rust") is not None:
        index = open_index(settings, collections["rust"])
        try:
            retriever = Retriever(embedder=embedder, index=index, settings=settings)
            outcomes += answer_all([q for q in rust_questions() if q.split in splits], retriever,
                                   answerer, k=RUST_K)
        finally:
            index.close()
    return outcomes


# -- the report ------------------------------------------------------------------------------------------------
def _cell(value: tuple[float | None, int]) -> str:
    share, n = value
    return "-" if share is None else f"{share:.3f} (n={n})"


def report(outcomes: list[Outcome]) -> tuple[str, dict[str, dict[str, tuple[float | None, int]]]]:
    by_split = {split: metrics([o for o in outcomes if o.split == split]) for split in SPLITS}
    regression = metrics([o for o in outcomes if o.split == "regression"])
    rows = []
    for name in by_split["held-out"]:
        if name.startswith("old "):
            continue
        target = TARGETS.get(name)
        held = by_split["held-out"][name][0]
        met = "-" if target is None or held is None else ("met" if held >= target else "NOT met")
        rows.append([name, _cell(by_split["calibration"][name]), _cell(by_split["held-out"][name]),
                     f">= {target}" if target else "-", met])
    main = markdown_table(["measure", "calibration", "held-out", "target (held-out)", "held-out meets it"], rows)
    old_rows = []
    for name in ("old on-topic section first", "old on-topic covered", "old off-topic not covered"):
        target = TARGETS.get(name)
        value = regression[name][0]
        old_rows.append([name, _cell(regression[name]), f">= {target}" if target else "-",
                         "-" if target is None or value is None else ("met" if value >= target else "NOT met")])
    old = markdown_table(["regression set (old, 48 on-topic + 50 off-topic)", "value", "target", "met"], old_rows)
    return f"{main}\n\nRegression sets:\n\n{old}", {**by_split, "regression": regression}


def style_report(outcomes: list[Outcome]) -> str:
    """The on-topic set per style of asking and locale: section first and covered, calibration beside held-out."""
    on = [o for o in outcomes if o.set_name == "ontopic"]
    rows = []
    for style, locale in sorted({(o.style, o.locale) for o in on}):
        cells = []
        for split in SPLITS:
            group = [o for o in on if (o.style, o.locale, o.split) == (style, locale, split)]
            cells += [_cell(rate(group, section_first)), _cell(rate(group, lambda o: o.covered))]
        rows.append([style, locale, *cells])
    return markdown_table(["on-topic style", "locale", "section first (calibration)", "covered (calibration)",
                           "section first (held-out)", "covered (held-out)"], rows)


def misses(outcomes: list[Outcome], split: str) -> list[str]:
    lines = []
    for o in outcomes:
        if o.split != split:
            continue
        if o.set_name in ("ontopic", "old-ontopic") and not o.covered:
            lines.append(f"on/{o.locale} not covered: {o.question}")
        elif o.set_name in ("neartopic", "old-offtopic") and o.covered:
            lines.append(f"off/{o.locale} covered: {o.question}")
        if o.set_name in ("ontopic", "rust") and not section_first(o):
            lines.append(f"{o.set_name}/{o.locale} first {o.ranked[:1]} expected {o.expected[:1]}: {o.question}")
    return lines


GRID_COLUMNS = ("section first (en)", "section first (ur)", "on-topic covered (en)", "on-topic covered (ur)",
                "near-topic not covered (en)", "near-topic not covered (ur)", "Rust chapter first", "Rust MRR",
                "old on-topic covered", "old off-topic not covered")


def setting_value(raw: str) -> Any:
    return yaml.safe_load(raw)


def calibration_figures(outcomes: list[Outcome]) -> dict[str, tuple[float | None, int]]:
    """The calibration halves' metrics and the old sets' (what tuning may look at)."""
    return {**metrics([o for o in outcomes if o.split == "calibration"]),
            **{k: v for k, v in metrics([o for o in outcomes if o.split == "regression"]).items()
               if k.startswith("old ")}}


def calibration_grid(settings: Any, grid: list[str]) -> str:
    """Calibration figures (and the old sets') for each combination of `NAME=v1,v2` settings, in one process."""
    import itertools

    from app.rag.embeddings import create_embedder

    axes = [(name, [setting_value(v) for v in values.split(",")])
            for name, values in (item.split("=", 1) for item in grid)]
    embedder = CachedEmbedder(create_embedder(settings))
    rows = []
    for combination in itertools.product(*(values for _, values in axes)):
        update = {name: value for (name, _), value in zip(axes, combination, strict=True)}
        variant = settings.model_copy(update=update)
        outcomes = evaluate(variant, {"textbook": None, "rust": "rust-book"}, splits=("calibration", "regression"),
                            embedder=embedder)
        figures = calibration_figures(outcomes)
        rows.append([", ".join(f"{k}={v}" for k, v in update.items()) or "(as set)",
                     *(f"{figures[c][0]:.3f}" if figures[c][0] is not None else "-" for c in GRID_COLUMNS)])
        print(" | ".join(rows[-1]), file=sys.stderr)
    return markdown_table(["variant (calibration)", *GRID_COLUMNS], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only, do not update bench/RESULTS.md")
    parser.add_argument("--index-dir", type=Path,
                        help="a prebuilt index folder holding the textbook and rust-book collections (skips ingest)")
    parser.add_argument("--misses", choices=SPLITS, help="also list the misses of this split")
    parser.add_argument("--styles", action="store_true",
                        help="also print the on-topic figures per style of asking (short, acronym, loanword, ...)")
    parser.add_argument("--calibration-only", action="store_true",
                        help="evaluate only the calibration halves and the old sets (for tuning; never writes RESULTS)")
    parser.add_argument("--dump", type=Path,
                        help="write the calibration and old sets' outcomes with their coverage evidence (JSON lines)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for this run (with --index-dir), e.g. --set rrf_k=10")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                        help="calibration figures for every combination of these settings (with --index-dir)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    splits = ("calibration", "regression") if args.calibration_only else (*SPLITS, "regression")
    if args.index_dir:
        from app.settings import load_settings

        overrides = {name: setting_value(value) for name, value in (item.split("=", 1) for item in args.set)}
        settings = load_settings(_env_file=None, index_dir=args.index_dir, **overrides,
                                 database_url="postgresql+psycopg://unused:unused@127.0.0.1:1/unused")  # pragma: allowlist secret
        if args.grid:
            print(calibration_grid(settings, args.grid))
            return 0
        outcomes = evaluate(settings, {"textbook": None, "rust": "rust-book"}, splits=splits)
    else:
        with bench_environment() as env:
            from app.settings import PROJECT_ROOT, get_settings
            from flows.ingest_textbook import ingest_textbook

            settings = get_settings()
            ingest_textbook(source=str(PROJECT_ROOT / "website"))
            tree = env.root / "rust-book"
            shutil.copytree(settings.shared_dir / "corpora" / "rust-book", tree)
            ingest_textbook(source=str(tree))
            outcomes = evaluate(settings, {"textbook": None, "rust": "rust-book"}, splits=splits)
    table, _ = report(outcomes)
    print(table)
    if args.styles:
        print(f"\n{style_report([o for o in outcomes if not args.calibration_only or o.split != 'held-out'])}")
    if args.dump:
        import dataclasses
        import json

        tuned_on = [o for o in outcomes if o.split != "held-out"]  # held-out misses are not read for ideas
        args.dump.write_text("".join(json.dumps(dataclasses.asdict(o), ensure_ascii=False) + "\n" for o in tuned_on),
                             encoding="utf-8")
    if args.misses:
        print("\n".join(misses(outcomes, args.misses)))
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if not args.no_write and not args.calibration_only:
        write_section("Answer quality: held-out sets", f"{machine_line()}\n\n{table}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
