"""Prove the near-topic questions are not answered by the textbook: grep both locales for their absent terms.

Every entry of bench/eval/textbook-neartopic.yaml lists `absent_terms`, the salient names a page answering it
would have to use (in English and, for Urdu questions, in Urdu script too). This greps the chapters of both
locales (website/docs and website/i18n/<locale>/docusaurus-plugin-content-docs/current, .md and .mdx,
front matter and code included) case-insensitively for each term and fails listing every term it finds.

A term matches where a word starts, with any ending ("drone" finds "drones", "PID" does not find "rapid");
spaces and hyphens inside a term match any run of spaces, hyphens or underscores. Both sides are NFKC-normalised,
case-folded, and Arabic letter forms are mapped to the Urdu ones (ي/ی, ك/ک, ه/ہ) with zero-width marks removed.

Exit status: 0 when every term is absent, 1 when one is found or an entry lists no terms, 2 when the
chapters are missing.
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from bench.eval_offbook import NEARTOPIC_PATH, NearTopicQuestion, load_textbook_neartopic

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SITE = PROJECT_ROOT / "website"
LETTER_FORMS = str.maketrans({"ي": "ی", "ى": "ی", "ك": "ک", "ه": "ہ", "ة": "ہ", "\u200c": None, "\u200d": None,
                              "\u200e": None, "\u200f": None, "\u0640": None})
TERM_GAP_RE = re.compile(r"[\s\-_]+")


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().translate(LETTER_FORMS)


def chapter_files(site: Path) -> list[Path]:
    """The textbook's chapters in every locale: docs/ and i18n/*/docusaurus-plugin-content-docs/current/."""
    roots = [site / "docs", *sorted(site.glob("i18n/*/docusaurus-plugin-content-docs/current"))]
    return sorted(p for root in roots if root.is_dir() for p in root.rglob("*") if p.suffix in {".md", ".mdx"})


def term_pattern(term: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in TERM_GAP_RE.split(normalise(term).strip()) if part]
    return re.compile(r"(?<!\w)" + r"[\s\-_]*".join(parts))


@dataclass(frozen=True)
class Finding:
    question: NearTopicQuestion
    term: str
    files: tuple[str, ...]


def find_present_terms(questions: list[NearTopicQuestion], chapters: dict[str, str]) -> list[Finding]:
    """Every (question, term) whose term occurs in a chapter, with the chapters it occurs in."""
    findings = []
    for question in questions:
        for term in question.absent_terms:
            pattern = term_pattern(term)
            files = tuple(name for name, text in chapters.items() if pattern.search(text))
            if files:
                findings.append(Finding(question, term, files))
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="\n".join(__doc__.split("\n")[2:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=NEARTOPIC_PATH, help="the question file (default: %(default)s)")
    parser.add_argument("--site", type=Path, default=DEFAULT_SITE, help="the Docusaurus site (default: %(default)s)")
    args = parser.parse_args(argv)

    files = chapter_files(args.site)
    if not files:
        print(f"error: no chapters under {args.site}/docs or {args.site}/i18n/*/docusaurus-plugin-content-docs/current",
              file=sys.stderr)
        return 2
    chapters = {str(p.relative_to(args.site)): normalise(p.read_text(encoding="utf-8")) for p in files}
    questions = load_textbook_neartopic(path=args.set)
    failed = False
    for question in questions:
        if not [t for t in question.absent_terms if t.strip()]:
            print(f"NO TERMS: {question.question!r} lists no absent_terms")
            failed = True
    findings = find_present_terms(questions, chapters)
    for finding in findings:
        print(f"FOUND {finding.term!r} (question {finding.question.question!r}) in: {', '.join(finding.files)}")
    terms = sum(len(q.absent_terms) for q in questions)
    if findings or failed:
        print(f"{len(findings)} term(s) found in the book; {len(questions)} questions, {terms} terms, "
              f"{len(chapters)} chapter files")
        return 1
    print(f"all absent: {len(questions)} questions, {terms} terms, {len(chapters)} chapter files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
