"""Loaders for two evaluation sets that sit beside a book rather than inside it.

- bench/eval/textbook-neartopic.yaml: questions near the site's textbook (robotics and AI tools, products,
  people, standards...) that the textbook does not answer; the chat must say "not covered". Each entry names
  the `absent_terms` that prove it (bench/eval_absence.py greps both locales for them).
- bench/eval/rust-book-paraphrased.yaml: paraphrased learner questions on the Rust book
  (SHARED_DIR/corpora/rust-book), each with the chapter file that answers it best.

Both are split into a calibration half and a held-out half (see each file's header for how).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

EVAL_DIR = Path(__file__).resolve().parent / "eval"
NEARTOPIC_PATH = EVAL_DIR / "textbook-neartopic.yaml"
RUST_PARAPHRASED_PATH = EVAL_DIR / "rust-book-paraphrased.yaml"
SPLITS = ("calibration", "held-out")
CHAPTER_FILE_RE = re.compile(r"^ch(\d+)-")


@dataclass(frozen=True)
class NearTopicQuestion:
    """A question near the textbook's topic that the textbook does not answer."""

    question: str
    locale: str
    category: str
    topic: str
    style: str
    absent_terms: tuple[str, ...]
    split: str


@dataclass(frozen=True)
class RustBookQuestion:
    """A paraphrased question on the Rust book and the chapter file(s) that answer it."""

    question: str
    expected_file: str
    also_ok: tuple[str, ...]
    style: str
    split: str

    @property
    def accepted_files(self) -> tuple[str, ...]:
        """Files a retrieved chunk may come from to count as a hit (the chunk payload's `source_path`)."""
        return (self.expected_file, *self.also_ok)

    @property
    def accepted_page_urls(self) -> tuple[str, ...]:
        """The same files as the index names their pages (a chunk's `page_url`, e.g. /docs/ch04-01-what-is-ownership)."""
        from app.rag.chunking import page_url_for

        return tuple(page_url_for(name, locale="en") for name in self.accepted_files)


def rust_split_for(file_name: str) -> str:
    """The half a Rust-book file's questions belong to: even chapter numbers calibrate, odd ones and appendices are held out."""
    match = CHAPTER_FILE_RE.match(file_name)
    if match is None:
        return "held-out"
    return "calibration" if int(match.group(1)) % 2 == 0 else "held-out"


def _entries(path: Path, split: str | None) -> list[dict]:
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    return [e for e in entries if split is None or e["split"] == split]


def _terms(entry: dict) -> tuple[str, ...]:
    terms = entry["absent_terms"]
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise ValueError(f"absent_terms of {entry['question']!r} must be a list of strings (quote numbers): {terms!r}")
    return tuple(terms)


def load_textbook_neartopic(split: str | None = None, path: Path = NEARTOPIC_PATH) -> list[NearTopicQuestion]:
    """The near-topic questions the textbook does not answer; `split` is "calibration", "held-out" or None (all)."""
    return [
        NearTopicQuestion(question=e["question"], locale=e["locale"], category=e["category"], topic=e["topic"],
                          style=e["style"], absent_terms=_terms(e), split=e["split"])
        for e in _entries(path, split)
    ]


def load_rust_paraphrased(split: str | None = None, path: Path = RUST_PARAPHRASED_PATH) -> list[RustBookQuestion]:
    """The paraphrased Rust-book questions; `split` is "calibration", "held-out" or None (all)."""
    return [
        RustBookQuestion(question=e["question"], expected_file=e["expected_file"], also_ok=tuple(e.get("also_ok") or ()),
                         style=e["style"], split=e["split"])
        for e in _entries(path, split)
    ]
