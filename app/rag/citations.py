"""Citation verification: the answer's [n] markers and the source list always agree, and every cited
sentence is supported by the source it cites.

Pure functions on text. `verify_citations` takes an answer and the texts of the sources it was
written from, and returns the repaired answer with the order of the sources it still cites:

- markers that point to no source ([7] with five sources) are removed            -> `phantom`
- a cited sentence its source does not support is re-pointed to a source that
  supports it (`miscited`), or dropped when none does                           -> `unsupported`
- a sentence with no marker that states something (enough content terms) is
  cited when a source supports it (`uncited`), or dropped                        -> `unsupported`
- sources are renumbered 1..m in order of first use (`renumbered`), and sources
  no sentence cites are dropped from the list                                    -> `unused`

Support is lexical: the share of the sentence's content terms (the BM25 tokenizer's: stop words
dropped, English lightly stemmed, Urdu normalised) found in the source. The threshold is calibrated in
bench/covered_quality.py (see bench/RESULTS.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.rag.markdown import SENTENCE_END_CHARS, scan_lines, split_sentences
from app.rag.sparse import terms_of_text

MARKER_RE = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
MARKER_GROUP_RE = re.compile(r"(?:\s*\[\d{1,3}\])+")
# "... walking. [1] Next" -> "... walking [1]. Next": a marker after the full stop belongs to that sentence.
TRAILING_MARKERS_RE = re.compile(rf"([{SENTENCE_END_CHARS}])((?:\s*\[\d{{1,3}}\])+)")
DEFAULT_MIN_SUPPORT = 0.4
MIN_CLAIM_TERMS = 3


@dataclass
class VerifiedCitations:
    text: str
    source_order: list[int]
    repairs: Counter[str] = field(default_factory=Counter)

    @property
    def verified(self) -> bool:
        """Every marker left points to a listed source that supports its sentence, and there is one."""
        return bool(self.source_order)


def support(sentence: str, source: str) -> float:
    """The share of the sentence's content terms that occur in the source (0..1)."""
    terms = terms_of_text(strip_markers(sentence))  # both cached: answers quote the book's sentences again and again
    if not terms:
        return 1.0
    return len(terms & terms_of_text(source)) / len(terms)


def strip_markers(text: str) -> str:
    return MARKER_GROUP_RE.sub("", text)


def _normalise_markers(text: str) -> str:
    def split_list(match: re.Match[str]) -> str:
        return "".join(f"[{n}]" for n in re.split(r"\s*[,;]\s*", match.group(1)))

    text = MARKER_RE.sub(split_list, text)
    return TRAILING_MARKERS_RE.sub(lambda m: f"{m.group(2)}{m.group(1)}", text)


def _sentences(line: str) -> list[str]:
    return [s.strip() for s in split_sentences(line) if s.strip()]


def _cited(sentence: str) -> list[int]:
    return [int(n) for n in re.findall(r"\[(\d{1,3})\]", sentence)]


def _with_markers(sentence: str, numbers: Sequence[int]) -> str:
    bare = strip_markers(sentence).rstrip()
    end = ""
    while bare and bare[-1] in SENTENCE_END_CHARS:
        bare, end = bare[:-1], bare[-1] + end
    return bare.rstrip() + " " + "".join(f"[{n}]" for n in numbers) + end


def verify_citations(
    answer: str, sources: Sequence[str], *, check_support: bool = True, min_support: float = DEFAULT_MIN_SUPPORT,
) -> VerifiedCitations:
    """Repair the answer's citations against `sources` (texts, numbered from 1 in this order)."""
    repairs: Counter[str] = Counter()

    def supported_by(sentence: str, number: int) -> bool:
        return not check_support or support(sentence, sources[number - 1]) >= min_support

    kept_lines: list[list[tuple[str, list[int]]] | str] = []
    for line in scan_lines(_normalise_markers(answer).split("\n")):
        if line.is_code:  # code is quoted, not claimed: kept as it is
            kept_lines.append(line.text)
            continue
        kept: list[tuple[str, list[int]]] = []
        for sentence in _sentences(line.text):
            cited = _cited(sentence)
            valid = [n for n in dict.fromkeys(cited) if 1 <= n <= len(sources)]
            repairs["phantom"] += sum(1 for n in cited if not 1 <= n <= len(sources))
            is_claim = len(terms_of_text(strip_markers(sentence))) >= MIN_CLAIM_TERMS
            good = [n for n in valid if supported_by(sentence, n)]
            if valid and not good or (not valid and is_claim):
                best = _best_source(sentence, sources) if check_support else None
                if best is not None and support(sentence, sources[best - 1]) >= min_support:
                    good = [best]
                    repairs["miscited" if valid else "uncited"] += 1
                else:
                    repairs["unsupported"] += 1
                    continue
            elif len(good) < len(valid):
                repairs["miscited"] += 1
            kept.append((sentence, good))
        kept_lines.append(kept)

    order: list[int] = []
    for kept in kept_lines:
        for _, numbers in kept if isinstance(kept, list) else ():
            order.extend(n for n in numbers if n not in order)
    renumber = {old: new for new, old in enumerate(order, start=1)}
    if any(old != new for old, new in renumber.items()):
        repairs["renumbered"] += 1
    repairs["unused"] += len(sources) - len(order) if order else 0

    lines = []
    for kept in kept_lines:
        if isinstance(kept, str):
            lines.append(kept)
            continue
        parts = [_with_markers(s, [renumber[n] for n in numbers]) if numbers else strip_markers(s).strip()
                 for s, numbers in kept]
        lines.append(" ".join(parts))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return VerifiedCitations(text=text, source_order=[n - 1 for n in order],
                             repairs=Counter({k: v for k, v in repairs.items() if v}))


def _best_source(sentence: str, sources: Sequence[str]) -> int | None:
    if not sources:
        return None
    scores = [support(sentence, source) for source in sources]
    best = max(range(len(sources)), key=lambda i: scores[i])
    return best + 1
