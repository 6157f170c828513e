"""The on-topic evaluation set of the textbook (bench/eval/textbook-ontopic.yaml) and the sections it points at.

Every question names the section that answers it by the URL the index cites (`page_url#anchor`, as the
ingest's own chunker computes it). `python -m bench.eval_sets` lists those section URLs with their headings,
to write or check the set against; `--uncovered` lists only the sections no question expects yet.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ONTOPIC_PATH = Path(__file__).resolve().parent / "eval" / "textbook-ontopic.yaml"
# Split by chapter: nothing tuned on the calibration half has seen a held-out chapter, in either locale.
SPLIT_CHAPTERS = {
    "calibration": ("intro-to-physical-ai", "ros2-fundamentals", "perception-and-sensor-fusion"),
    "held-out": ("kinematics-and-locomotion", "simulation-and-digital-twins", "vision-language-action"),
}
STYLES = ("short", "acronym", "misspelling", "paraphrase", "how-do-i", "table-fact", "code-fact", "conceptual")
# Urdu only: an English term the Urdu chapter keeps in Latin letters, written by the reader in Urdu letters (لانچ).
URDU_STYLES = ("loanword",)


@dataclass(frozen=True)
class OnTopicQuestion:
    question: str
    locale: str
    chapter: str
    expected_urls: tuple[str, ...]  # the best section first
    style: str
    split: str


@dataclass(frozen=True)
class Section:
    locale: str
    chapter: str
    url: str
    heading_path: tuple[str, ...]
    text: str  # the section's chunks, joined


def split_of(chapter: str) -> str:
    return next(split for split, chapters in SPLIT_CHAPTERS.items() if chapter in chapters)


def load_textbook_ontopic(split: str | None = None, path: Path = ONTOPIC_PATH) -> list[OnTopicQuestion]:
    """The set's questions, all of them or one split's ("calibration" or "held-out")."""
    if split is not None and split not in SPLIT_CHAPTERS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLIT_CHAPTERS)}")
    questions = [
        OnTopicQuestion(question=entry["question"], locale=entry["locale"], chapter=entry["chapter"],
                        expected_urls=tuple(entry["expected_urls"]), style=entry["style"], split=entry["split"])
        for entry in yaml.safe_load(path.read_text(encoding="utf-8")) or []
    ]
    return [q for q in questions if split is None or q.split == split]


def textbook_sections(site: Path | None = None) -> list[Section]:
    """Every section the index cites, in page order: the chunker's distinct URLs over both locales."""
    from prefect.logging import disable_run_logger

    from app.rag.chunking import Chunk
    from app.settings import PROJECT_ROOT
    from tasks.textbook import discover_chapters, parse_and_chunk

    with disable_run_logger():
        chunks = parse_and_chunk.fn(discover_chapters.fn(site or PROJECT_ROOT / "website")).chunks
    texts: dict[str, list[str]] = {}
    first: dict[str, Chunk] = {}
    for chunk in chunks:
        texts.setdefault(chunk.url, []).append(chunk.text)
        first.setdefault(chunk.url, chunk)
    return [Section(c.locale, c.chapter, url, c.heading_path, "\n\n".join(texts[url])) for url, c in first.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--locale", choices=("en", "ur"), help="only this locale's sections")
    parser.add_argument("--chapter", help="only this chapter's sections (its doc id, e.g. ros2-fundamentals)")
    parser.add_argument("--uncovered", action="store_true", help="only sections no question of the set expects")
    parser.add_argument("--counts", action="store_true", help="also print how many questions expect each section")
    args = parser.parse_args(argv)
    expected: dict[str, int] = {}
    if args.uncovered or args.counts:
        for question in load_textbook_ontopic():
            for url in question.expected_urls:
                expected[url] = expected.get(url, 0) + 1
    for section in textbook_sections():
        if (args.locale and section.locale != args.locale) or (args.chapter and section.chapter != args.chapter):
            continue
        if args.uncovered and section.url in expected:
            continue
        count = f"{expected.get(section.url, 0):3d}  " if args.counts else ""
        print(f"{count}{section.url}\t{' > '.join(section.heading_path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
