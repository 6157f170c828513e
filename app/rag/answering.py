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
from typing import Any, Protocol

from app.openai_client import create_openai_client
from app.rag.citations import verify_citations
from app.rag.coverage import CoveragePolicy
from app.rag.retrieval import Retrieval, RetrievedChunk
from app.rag.sparse import tokenize

log = logging.getLogger(__name__)

NOT_COVERED = {
    "en": "The book does not seem to cover this question, so I won't guess. Try rephrasing it, "
    "or ask about a topic from the chapters.",
    "ur": "کتاب میں اس سوال کا جواب موجود نہیں لگتا، اس لیے میں اندازہ نہیں لگاؤں گا۔ سوال کو دوسرے الفاظ میں "
    "پوچھیں، یا ابواب کے کسی موضوع کے بارے میں سوال کریں۔",
}
SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?۔؟])\s+")
MAX_ANSWER_SENTENCES = 3


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


def _prose_sentences(text: str) -> list[str]:
    """Sentences of the prose of a chunk: code fences, tables and headings are not answer material."""
    prose_lines: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence or stripped.startswith(("|", "#")) or not stripped:
            prose_lines.append("\n")
            continue
        prose_lines.append(re.sub(r"^([-*+]|\d+\.)\s+", "", stripped))
    sentences = []
    for paragraph in " ".join(prose_lines).split("\n"):
        sentences.extend(s.strip() for s in SENTENCE_SPLIT_RE.split(paragraph) if len(s.strip()) > 20)
    return sentences


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
        # The selection says what "this" is: its terms pick the sentences too.
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


def compose_extractive(question: str, chunks: list[RetrievedChunk]) -> str | None:
    query_terms = set(tokenize(question))
    candidates: list[tuple[float, int, int, str]] = []
    sentences_by_chunk = [(n, _prose_sentences(c.text)) for n, c in enumerate(chunks, start=1)]
    document_frequency: Counter[str] = Counter()
    for _, sentences in sentences_by_chunk:
        for sentence in sentences:
            document_frequency.update(set(tokenize(sentence)))
    total = max(1, sum(len(s) for _, s in sentences_by_chunk))
    for source_number, sentences in sentences_by_chunk:
        for position, sentence in enumerate(sentences):
            terms = set(tokenize(sentence))
            overlap = query_terms & terms
            if not overlap:
                continue
            score = sum(math.log(1 + total / document_frequency[t]) for t in overlap)
            score *= 1.0 / (1 + 0.15 * (source_number - 1))  # better-ranked chunks win ties
            candidates.append((score, source_number, position, sentence))
    if not candidates:
        return None
    best = sorted(candidates, key=lambda c: -c[0])[:MAX_ANSWER_SENTENCES]
    best.sort(key=lambda c: (c[1], c[2]))
    return " ".join(f"{sentence} [{source_number}]" for _, source_number, _, sentence in best)


SYSTEM_PROMPT = (
    "You are the assistant of the textbook 'Physical AI & Humanoid Robotics'. Answer only from the numbered "
    "sources below. Cite every claim with its source number in square brackets, like [1] or [2][3]. If the "
    "sources do not answer the question, say that the book does not cover it. Answer in the language of the "
    "question ({language}). Be concise."
)


class OpenAIAnswerer:
    """Chat completions with a grounded prompt; any failure falls back to the extractive answer."""

    def __init__(self, settings: Any) -> None:
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
        messages += [{"role": t.role, "content": t.content} for t in history[-4:]]
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

    def answer(self, question: str, retrieval: Retrieval, history: list[Turn], locale: str,
               selection: Selection | None = None) -> Answer:
        import openai

        if not self._coverage.covers(retrieval):
            return not_covered_answer(locale, "openai", self.model)
        started = time.perf_counter()
        try:
            response = self._client.chat.completions.create(
                model=self.model, messages=self._messages(question, retrieval, history, locale, selection),
                temperature=0.2,
            )
        except openai.OpenAIError as exc:
            return self._fallback(question, retrieval, history, locale, f"{exc.__class__.__name__}: {exc}", selection)
        usage = response.usage
        answer = Answer(
            text=(response.choices[0].message.content or "").strip(), covered=True, backend="openai",
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
                temperature=0.2,
                stream=True, stream_options={"include_usage": True},
            )
            for event in stream:
                model = event.model or model
                if event.usage:
                    prompt_tokens, completion_tokens = event.usage.prompt_tokens, event.usage.completion_tokens
                for choice in event.choices:
                    delta = choice.delta.content or ""
                    if delta:
                        parts.append(delta)
                        yield delta
        except openai.OpenAIError as exc:
            if parts:  # the reader already saw part of the answer: finish it as an error, don't restart
                raise
            answer = self._fallback(question, retrieval, history, locale, f"{exc.__class__.__name__}: {exc}",
                                    selection)
            yield from _word_deltas(answer.text)
            yield answer
            return
        answer = Answer(
            text="".join(parts).strip(), covered=True, backend="openai", model=model, prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens, generation_ms=(time.perf_counter() - started) * 1000,
        )
        yield self._verified(answer, question, retrieval, history, locale, selection)


def create_answerer(settings: Any) -> Answerer:
    if settings.answer_backend == "openai":
        return OpenAIAnswerer(settings)
    return ExtractiveAnswerer(coverage=CoveragePolicy.from_settings(settings))
