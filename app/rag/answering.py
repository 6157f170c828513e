"""Answers with [n] citations: extractive (default, no LLM) or OpenAI chat completions.

Both refuse to guess: when retrieval finds nothing relevant, the answer says the book does not cover
the question and cites nothing. The OpenAI backend falls back to the extractive answer on any error
or timeout and says so.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from app.core.openai_client import create_openai_client
from app.rag.citations import verify_citations
from app.rag.coverage import CoveragePolicy
from app.rag.markdown import SENTENCE_END_CHARS, TABLE_SEPARATOR_RE, scan_lines, split_sentences
from app.rag.retrieval import Retrieval, RetrievedChunk
from app.rag.sparse import terms_of_text, tokenize
from app.rag.vocabulary import QUESTION_WORDS, spelled_out_acronyms
from app.settings import Settings

log = logging.getLogger(__name__)

NOT_COVERED = {
    "en": "The book does not seem to cover this question, so I won't guess. Try rephrasing it, "
    "or ask about a topic from the chapters.",
    "ur": "کتاب میں اس سوال کا جواب موجود نہیں لگتا، اس لیے میں اندازہ نہیں لگاؤں گا۔ سوال کو دوسرے الفاظ میں "
    "پوچھیں، یا ابواب کے کسی موضوع کے بارے میں سوال کریں۔",
}
MAX_ANSWER_SENTENCES = 3
MIN_PROSE_SENTENCE_CHARS = 20  # shorter "sentences" are captions, list stubs or fragments, not answer material
# An extractive score is divided by 1 + RANK_DECAY per rank below the first: the better-ranked chunk wins ties.
RANK_DECAY = 0.15
# The last two exchanges go to the model with the sources: enough to resolve "it" in a follow-up, no more.
MODEL_HISTORY_TURNS = 4
ANSWER_TEMPERATURE = 0.2  # low: the answer restates the sources, it does not invent


@dataclass
class Answer:
    text: str
    covered: bool
    backend: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generation_ms: float = 0.0
    fallback_reason: str | None = None
    # Which retrieved chunks the answer cites, in the order of its [1]..[m] (None: all, as retrieved).
    source_order: list[int] | None = None
    citations_verified: bool = False
    citation_repairs: dict[str, int] = field(default_factory=dict)

    @property
    def is_fallback(self) -> bool:
        return self.fallback_reason is not None


@dataclass(frozen=True)
class Selection:
    """Text the reader selected on a page of the site, asked about."""

    text: str
    page_url: str


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


class Answerer(Protocol):
    model: str

    def answer(self, question: str, retrieval: Retrieval, history: list[Turn], locale: str,
               selection: Selection | None = None) -> Answer: ...

    def stream(self, question: str, retrieval: Retrieval, history: list[Turn], locale: str,
               selection: Selection | None = None) -> Iterator[str | Answer]: ...


def with_verified_citations(answer: Answer, retrieval: Retrieval, *, check_support: bool, min_support: float) -> Answer:
    """Make the answer's markers and its source list agree; with `check_support`, drop unsupported claims."""
    result = verify_citations(answer.text, [c.text for c in retrieval.chunks], check_support=check_support,
                              min_support=min_support)
    answer.text, answer.source_order = result.text, result.source_order
    answer.citations_verified, answer.citation_repairs = result.verified, dict(result.repairs)
    return answer


def not_covered_answer(locale: str, backend: str, model: str) -> Answer:
    return Answer(text=NOT_COVERED.get(locale, NOT_COVERED["en"]), covered=False, backend=backend, model=model)


@dataclass(frozen=True)
class EvidenceUnit:
    """One quotable piece of a chunk: a prose sentence, a table row ("column: value" pairs) or a code line."""

    kind: str  # prose | table | code
    text: str  # as quoted in an answer
    terms_text: str  # what its relevance is judged on


MIN_CODE_LINE_CHARS = 8


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table_units(rows: list[str]) -> list[EvidenceUnit]:
    """A Markdown table's data rows, each as "column: value; column: value" under its header."""
    if len(rows) < 3 or not TABLE_SEPARATOR_RE.match(rows[1].strip()):
        return []
    header = _cells(rows[0])
    units = []
    for row in rows[2:]:
        pairs = [f"{column}: {value}" for column, value in zip(header, _cells(row), strict=False) if value]
        if pairs:
            text = "; ".join(pairs)
            units.append(EvidenceUnit("table", text, text))
    return units


LIST_ITEM_RE = re.compile(r"([-*+]|\d+\.)\s+")
COMMENT_LINE_RE = re.compile(r"(#|//|--|;)\s")
ALIGNED_GAP_RE = re.compile(r"\S\s{3,}(?=\S)")
CODE_LABEL_RE = re.compile(r"[^()=\[\]{}]*\s[^()=\[\]{}]*:")  # "In matrix form, with homogeneous coordinates:"
LINE_CONTINUATION = "\\"


def _joined_continuations(lines: list[str]) -> list[str]:
    """The block's stripped lines, a command continued with a trailing backslash joined into one line."""
    joined: list[str] = []
    continued = False
    for line in lines:
        code = line.strip()
        piece = code.removesuffix(LINE_CONTINUATION).strip()
        if continued and joined:
            joined[-1] = f"{joined[-1]} {piece}"
        else:
            joined.append(piece)
        continued = code.endswith(LINE_CONTINUATION)
    return joined


def _code_units(lines: list[str]) -> list[EvidenceUnit]:
    """A block's code lines. A comment line is not quoted: it labels the line after it, which is found by its words
    ("# Services and parameters" above `ros2 service list`). A line laid out in columns (a matrix drawn in text)
    means nothing on its own."""
    units = []
    comments: list[str] = []
    for code in _joined_continuations(lines):
        if COMMENT_LINE_RE.match(code):
            comments.append(code)
            continue
        if (len(code) >= MIN_CODE_LINE_CHARS and any(ch.isalpha() for ch in code)
                and len(ALIGNED_GAP_RE.findall(code)) < 2 and not CODE_LABEL_RE.fullmatch(code)):
            shown = re.sub(r"\s{2,}", " ", code.replace("`", ""))
            units.append(EvidenceUnit("code", f"`{shown}`", " ".join([*comments, code])))
        comments.clear()
    return units


MAX_LEAD_IN_CODE_LINES = 2


def _with_lead_in(units: list[EvidenceUnit], lead_in: int | None, code: list[EvidenceUnit]) -> list[EvidenceUnit]:
    """A sentence ending in ":" says nothing without the block it introduces. A formula or a command of a line or
    two is quoted with it (so neither is quoted alone); before a longer block the sentence is dropped and the
    block's lines stand on their own."""
    if lead_in is None:
        return code
    if code and len(code) <= MAX_LEAD_IN_CODE_LINES:
        sentence = units[lead_in].text
        joined = " ".join(unit.text for unit in code)
        units[lead_in] = EvidenceUnit("prose", f"{sentence} {joined}",
                                      f"{units[lead_in].terms_text} {' '.join(unit.terms_text for unit in code)}")
        return []
    del units[lead_in]
    return code


def evidence_units(text: str) -> list[EvidenceUnit]:
    """The chunk's prose sentences, table rows and code lines, in order (headings are not answer material)."""
    units: list[EvidenceUnit] = []
    prose_lines: list[str] = []
    table_rows: list[str] = []
    code_lines: list[str] = []

    def flush_prose() -> None:
        for paragraph in " ".join(prose_lines).split("\n"):
            units.extend(EvidenceUnit("prose", s.strip(), s.strip())
                         for s in split_sentences(paragraph) if len(s.strip()) > MIN_PROSE_SENTENCE_CHARS)
        prose_lines.clear()

    def flush_table() -> None:
        units.extend(_table_units(table_rows))
        table_rows.clear()

    def lead_in() -> int | None:
        """The last unit, if it is a sentence that introduces what follows ("... a regularized problem:")."""
        if units and units[-1].kind == "prose" and units[-1].text.endswith(":"):
            return len(units) - 1
        return None

    fence_lead_in: int | None = None
    for scanned in scan_lines(text.split("\n")):
        line, stripped = scanned.text, scanned.text.strip()
        if scanned.kind == "fence-open":
            flush_prose()
            flush_table()
            fence_lead_in = lead_in()
            continue
        if scanned.kind == "fence-close":
            units.extend(_with_lead_in(units, fence_lead_in, _code_units(code_lines)))
            code_lines.clear()
            fence_lead_in = None
            continue
        if scanned.kind == "code":
            code_lines.append(line)
            continue
        if stripped.startswith("|"):
            if not table_rows:
                flush_prose()
                table_lead_in = lead_in()
                if table_lead_in is not None:  # its rows are quoted on their own
                    del units[table_lead_in]
            table_rows.append(stripped)
            continue
        if table_rows:
            flush_table()
        if stripped.startswith("#") or not stripped:
            prose_lines.append("\n")
            continue
        item = LIST_ITEM_RE.match(stripped)
        if item:  # each item of a list is a unit of its own, not a clause of the paragraph before it
            prose_lines.append("\n")
        prose_lines.append(stripped[item.end():] if item else stripped)
    units.extend(_code_units(code_lines))  # a chunk can end inside a fence
    flush_table()
    flush_prose()
    return units


class ExtractiveAnswerer:
    """Compose the answer from the retrieved sentences that share the most (rare) terms with the question."""

    model = "extractive"

    def __init__(self, *, coverage: CoveragePolicy) -> None:
        self._coverage = coverage

    def answer(self, question: str, retrieval: Retrieval, history: list[Turn], locale: str,
               selection: Selection | None = None) -> Answer:
        started = time.perf_counter()
        if not self._coverage.covers(retrieval):
            return not_covered_answer(locale, "extractive", self.model)
        # The selection says what "this" is: its terms pick the sentences too. An acronym spelled out in Urdu
        # letters picks them as the book writes it (ڈی ڈی ایس: DDS), as it was searched.
        question = spelled_out_acronyms(question)
        text = compose_extractive(f"{question} {selection.text}" if selection else question, retrieval.chunks)
        if text is None:
            return not_covered_answer(locale, "extractive", self.model)
        answer = Answer(text=text, covered=True, backend="extractive", model=self.model,
                        generation_ms=(time.perf_counter() - started) * 1000)
        # The sentences are the sources' own: only the numbering needs to follow the order of use.
        return with_verified_citations(answer, retrieval, check_support=False, min_support=0)

    def stream(self, question: str, retrieval: Retrieval, history: list[Turn], locale: str,
               selection: Selection | None = None) -> Iterator[str | Answer]:
        answer = self.answer(question, retrieval, history, locale, selection)
        yield from _word_deltas(answer.text)
        yield answer


def _word_deltas(text: str) -> Iterator[str]:
    yield from re.findall(r"\S+\s*", text)


@lru_cache(maxsize=4096)
def units_with_terms(text: str) -> tuple[tuple[EvidenceUnit, frozenset[str]], ...]:
    """A chunk's evidence units with their terms; kept, as the same chunks answer many questions."""
    return tuple((unit, terms_of_text(unit.terms_text)) for unit in evidence_units(text))


def _section_heading_terms(chunk: RetrievedChunk) -> frozenset[str]:
    path = chunk.payload.get("heading_path") or []
    return terms_of_text(str(path[-1])) if path else frozenset()


def compose_extractive(question: str, chunks: list[RetrievedChunk]) -> str | None:
    """Up to three pieces of the sources that share the most (rare) terms with the question, each cited.

    Pieces are prose sentences, table rows (quoted as "column: value" pairs) and code lines (in backticks): a
    fact that sits in a table or a code block is quoted as it stands.
    """
    # "tell me about ..." must not pick "Geometry tells the robot where ...": the reader's framing words are no
    # evidence, unless they are all the question has.
    query_terms = set(tokenize(question))
    query_terms = query_terms - QUESTION_WORDS or query_terms
    candidates: list[tuple[float, int, int, str, str]] = []
    units_by_chunk = [(n, units_with_terms(c.text)) for n, c in enumerate(chunks, start=1)]
    document_frequency: Counter[str] = Counter()
    for _, units in units_by_chunk:
        for _, terms in units:
            document_frequency.update(terms)
    total = max(1, sum(len(u) for _, u in units_by_chunk))
    for source_number, units in units_by_chunk:
        # A piece is judged with its section's heading: the code of "A subscriber" says `create_subscription`,
        # not "subscriber", and would lose to a sentence elsewhere that happens to say "Python" and "write".
        heading = _section_heading_terms(chunks[source_number - 1])
        for position, (unit, terms) in enumerate(units):
            overlap = query_terms & (terms | heading)
            if not overlap:
                continue
            score = sum(math.log(1 + total / max(1, document_frequency[t])) for t in overlap)
            score *= 1.0 / (1 + RANK_DECAY * (source_number - 1))
            candidates.append((score, source_number, position, unit.text, unit.kind))
    if not candidates:
        return None
    best: list[tuple[float, int, int, str, str]] = []
    quoted_kinds: set[str] = set()
    quoted: set[tuple[int, int]] = set()
    for candidate in sorted(candidates, key=lambda c: -c[0]):
        score, source_number, position, text, kind = candidate
        if kind != "prose" and kind in quoted_kinds:
            continue  # one table row and one code line at most: the rest of the answer is prose
        if (source_number, position) in quoted:
            continue
        if kind == "prose" and text.endswith(":"):  # it introduces what follows (a list): quote the two together
            units = units_by_chunk[source_number - 1][1]
            if position + 1 >= len(units) or (source_number, position + 1) in quoted:
                continue
            text = f"{text} {units[position + 1][0].text}"
            quoted.add((source_number, position + 1))
        quoted.add((source_number, position))
        quoted_kinds.add(kind)
        best.append((score, source_number, position, text, kind))
        if len(best) == MAX_ANSWER_SENTENCES:
            break
    best.sort(key=lambda c: (c[1], c[2]))
    # A row or a code line ends like a sentence, so that its citation stays its own.
    return " ".join(f"{text if kind == 'prose' or text[-1] in SENTENCE_END_CHARS else text + '.'} [{source_number}]"
                    for _, source_number, _, text, kind in best)


# What the model answers, alone, when the sources do not contain the answer: the reply becomes `covered: false`.
NOT_IN_SOURCES = "NOT_IN_SOURCES"
SYSTEM_PROMPT = (
    "You are the assistant of the textbook 'Physical AI & Humanoid Robotics'. Answer only from the numbered "
    "sources below. Cite every claim with its source number in square brackets, like [1] or [2][3]. If the "
    f"sources do not contain the answer to the question, reply with exactly {NOT_IN_SOURCES} and nothing else. "
    "Answer in the language of the question ({language}). Be concise."
)


def says_not_in_sources(text: str) -> bool:
    return text.strip().strip(".").strip() == NOT_IN_SOURCES


class OpenAIAnswerer:
    """Chat completions with a grounded prompt; any failure falls back to the extractive answer."""

    def __init__(self, settings: Settings) -> None:
        self.model = settings.openai_chat_model
        self._client = create_openai_client(settings)
        self._coverage = CoveragePolicy.from_settings(settings)
        self._extractive = ExtractiveAnswerer(coverage=self._coverage)
        self._min_support = settings.citation_min_support

    def _messages(self, question: str, retrieval: Retrieval, history: list[Turn], locale: str,
                  selection: Selection | None) -> list[dict[str, str]]:
        language = "Urdu" if locale == "ur" else "English"
        sources = "\n\n".join(
            f"[{n}] {c.payload.get('title', '')} — {c.payload.get('heading', '')}\n{c.text}"
            for n, c in enumerate(retrieval.chunks, start=1)
        )
        messages = [{"role": "system", "content": SYSTEM_PROMPT.format(language=language)}]
        messages += [{"role": t.role, "content": t.content} for t in history[-MODEL_HISTORY_TURNS:]]
        quoted = ""
        if selection:
            passage = "\n".join(f"> {line}" for line in selection.text.splitlines())
            quoted = f"The reader selected this passage on the page {selection.page_url}:\n{passage}\n\n"
        messages.append({"role": "user", "content": f"Sources:\n{sources}\n\n{quoted}Question: {question}"})
        return messages

    def _fallback(self, question: str, retrieval: Retrieval, history: list[Turn], locale: str, reason: str,
                  selection: Selection | None) -> Answer:
        log.warning("openai answer failed, using the extractive answer: %s", reason)
        answer = self._extractive.answer(question, retrieval, history, locale, selection)
        answer.backend = "extractive-fallback"
        answer.fallback_reason = reason
        return answer

    def _verified(self, answer: Answer, question: str, retrieval: Retrieval, history: list[Turn], locale: str,
                  selection: Selection | None) -> Answer:
        """The model's citations repaired; when no supported claim is left, the (grounded) extractive answer."""
        with_verified_citations(answer, retrieval, check_support=True, min_support=self._min_support)
        if answer.citations_verified:
            return answer
        repairs = answer.citation_repairs
        fallback = self._fallback(question, retrieval, history, locale, "no claim of the answer is supported by its sources",
                                  selection)
        fallback.citation_repairs = {**repairs, "no_supported_claim": 1}
        fallback.prompt_tokens, fallback.completion_tokens = answer.prompt_tokens, answer.completion_tokens
        fallback.model = answer.model
        return fallback

    def _not_in_sources(self, locale: str, model: str, prompt_tokens: int, completion_tokens: int,
                        started: float) -> Answer:
        """The model read the sources and found no answer in them: not covered, and nothing cited."""
        answer = not_covered_answer(locale, "openai", model)
        answer.prompt_tokens, answer.completion_tokens = prompt_tokens, completion_tokens
        answer.generation_ms = (time.perf_counter() - started) * 1000
        return answer

    def answer(self, question: str, retrieval: Retrieval, history: list[Turn], locale: str,
               selection: Selection | None = None) -> Answer:
        import openai

        if not self._coverage.covers(retrieval):
            return not_covered_answer(locale, "openai", self.model)
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=self._messages(question, retrieval, history, locale, selection),
                temperature=ANSWER_TEMPERATURE,
            )
        except openai.OpenAIError as exc:
            return self._fallback(question, retrieval, history, locale, f"{exc.__class__.__name__}: {exc}", selection)
        usage = response.usage
        text = (response.choices[0].message.content or "").strip()
        if says_not_in_sources(text):
            return self._not_in_sources(locale, response.model or self.model, usage.prompt_tokens if usage else 0,
                                        usage.completion_tokens if usage else 0, started)
        answer = Answer(
            text=text, covered=True, backend="openai",
            model=response.model or self.model,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            generation_ms=(time.perf_counter() - started) * 1000,
        )
        return self._verified(answer, question, retrieval, history, locale, selection)

    def stream(self, question: str, retrieval: Retrieval, history: list[Turn], locale: str,
               selection: Selection | None = None) -> Iterator[str | Answer]:
        """Deltas as the model writes them; the final Answer carries the repaired text and source order."""
        import openai

        if not self._coverage.covers(retrieval):
            answer = not_covered_answer(locale, "openai", self.model)
            yield from _word_deltas(answer.text)
            yield answer
            return
        started = time.perf_counter()
        parts: list[str] = []
        prompt_tokens = completion_tokens = 0
        model = self.model
        try:
            stream = self._client.chat.completions.create(
                model=self.model, messages=self._messages(question, retrieval, history, locale, selection),
                temperature=ANSWER_TEMPERATURE,
                stream=True, stream_options={"include_usage": True},
            )
            held = True  # while the reply could still be NOT_IN_SOURCES, nothing is shown to the reader
            for event in stream:
                model = event.model or model
                if event.usage:
                    prompt_tokens, completion_tokens = event.usage.prompt_tokens, event.usage.completion_tokens
                for choice in event.choices:
                    delta = choice.delta.content or ""
                    if not delta:
                        continue
                    parts.append(delta)
                    if not held:
                        yield delta
                    elif not NOT_IN_SOURCES.startswith("".join(parts).strip()[:len(NOT_IN_SOURCES)]):
                        held = False
                        yield "".join(parts)
        except openai.OpenAIError as exc:
            if parts:  # the reader already saw part of the answer: finish it as an error, don't restart
                raise
            answer = self._fallback(question, retrieval, history, locale, f"{exc.__class__.__name__}: {exc}",
                                    selection)
            yield from _word_deltas(answer.text)
            yield answer
            return
        if says_not_in_sources("".join(parts)):
            answer = self._not_in_sources(locale, model, prompt_tokens, completion_tokens, started)
            yield from _word_deltas(answer.text)
            yield answer
            return
        if held and parts:
            yield "".join(parts)
        answer = Answer(
            text="".join(parts).strip(), covered=True, backend="openai", model=model, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, generation_ms=(time.perf_counter() - started) * 1000,
        )
        yield self._verified(answer, question, retrieval, history, locale, selection)


def create_answerer(settings: Settings) -> Answerer:
    if settings.answer_backend == "openai":
        return OpenAIAnswerer(settings)
    return ExtractiveAnswerer(coverage=CoveragePolicy.from_settings(settings))
