"""Chat, streaming chat and search: retrieve, answer, persist, measure."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import BindParameter, Engine, Table, bindparam, insert, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session, SQLModel, select

from app.api.schemas import (
    ChatRequest,
    ChatResponse,
    Latency,
    SearchRequestBody,
    SearchResponse,
    SearchResult,
    Source,
    Usage,
)
from app.core.db import session_scope
from app.core.models import ChatSession, Message, QueryLog, utcnow
from app.core.pricing import cost_usd
from app.http.errors import InvalidRequest, NotFound
from app.observability.logging_setup import correlation_id_var
from app.observability.metrics import (
    ANSWERS,
    CITATION_FAILURES,
    DB_LATENCY,
    GENERATION_LATENCY,
    QUERY_DURATION,
    QUERY_ERRORS,
    TOKENS_USED,
    observe_retrieval,
)
from app.observability.tracing import record_question, set_attributes, span, start_detached_span
from app.rag.answering import Answer, Answerer, Selection, Turn
from app.rag.retrieval import Retrieval, RetrievedChunk, Retriever
from app.settings import Settings

log = logging.getLogger(__name__)
FOLLOW_UP_RE = re.compile(r"\b(it|its|this|that|these|those|they|them|their|he|she)\b|(\bوہ\b|\bیہ\b|\bاس\b|\bان\b)", re.I)
SNIPPET_CHARS = 280
SELECTION_CHARS_IN_QUERY = 1000
TITLE_CHARS = 60
HISTORY_MESSAGES = 6  # the last three exchanges of a session are the history a follow-up is read with
FOLLOW_UP_MAX_WORDS = 6  # a question this short is searched together with the previous one


def correlation_id() -> uuid.UUID | None:
    """The client's own X-Request-ID for this request, if it sent one (kept beside the row, never its key)."""
    value = correlation_id_var.get()
    return uuid.UUID(value) if value else None


@dataclass
class QueryPipeline:
    """What a question goes through: the settings, the retriever, the answerer, and the database it is logged in."""

    settings: Settings
    engine: Engine
    retriever: Retriever
    answerer: Answerer
    embedding_model: str


class Prepared(NamedTuple):
    """A chat request before its answer: the session and its history, what was retrieved, the reader's selection."""

    chat_session: ChatSession | None
    history: list[Turn]
    retrieval: Retrieval
    selection: Selection | None


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


@lru_cache
def _inserted_columns(table: Table) -> tuple[str, ...]:
    """The columns an insert sets: all but an autoincrement id (the database's)."""
    return tuple(c.name for c in table.columns if c is not table.autoincrement_column)


def _bound_values(table: Table, prefix: str) -> dict[str, BindParameter[Any]]:
    """Each inserted column as a named parameter `<prefix><column>`, typed like the column."""
    return {name: bindparam(f"{prefix}{name}", type_=table.c[name].type) for name in _inserted_columns(table)}


def _row(model: type[SQLModel], prefix: str, /, **values: Any) -> dict[str, Any]:
    """A row of `model` as parameters for `_bound_values(its table, prefix)`: `values`, and the model's defaults for
    the other columns. No model instance: a table model's constructor costs more CPU than the insert itself."""
    fields = model.model_fields
    row = {}
    for name in _inserted_columns(model.__table__):  # type: ignore[attr-defined]
        if name in values:
            row[prefix + name] = values[name]
        else:
            field = fields[name]
            row[prefix + name] = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    return row


# The writes are built once with named parameters: each request executes the same statement objects, so SQLAlchemy
# compiles them once (its compiled cache) and psycopg prepares them on the server after a few executions, instead of
# a statement with literal VALUES compiled anew per request.
SESSION_PREFIX, QUERY_LOG_PREFIX, MESSAGE_PREFIXES = "s_", "q_", ("m0_", "m1_")
INSERT_QUERY_LOG = insert(QueryLog.__table__).values(_bound_values(QueryLog.__table__, QUERY_LOG_PREFIX))


def _exchange_statement() -> Any:
    """The session touched (or created), the question and the answer, and the query_log row: one statement."""
    touched = pg_insert(ChatSession.__table__).values(_bound_values(ChatSession.__table__, SESSION_PREFIX))
    touched = touched.on_conflict_do_update(index_elements=["id"], set_={"last_active_at": touched.excluded.last_active_at})
    # INSERT ... SELECT ... UNION ALL SELECT: a multi-row VALUES is a statement SQLAlchemy does not cache.
    rows = [select(*[value.label(name) for name, value in _bound_values(Message.__table__, prefix).items()])
            for prefix in MESSAGE_PREFIXES]
    added = insert(Message.__table__).from_select(_inserted_columns(Message.__table__), union_all(*rows))
    return INSERT_QUERY_LOG.add_cte(touched.cte("touched"), added.cte("added"))


INSERT_EXCHANGE = _exchange_statement()


def snippet(text: str) -> str:
    flat = re.sub(r"```[^\n]*\n?", "", text)
    flat = re.sub(r"\s+", " ", flat).strip()
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rsplit(" ", 1)[0] + "…"


def to_source(chunk: RetrievedChunk) -> Source:
    payload = chunk.payload
    return Source(
        title=str(payload.get("title", "")), url=chunk.url, heading=str(payload.get("heading", "")),
        snippet=snippet(chunk.text), score=round(chunk.score, 6),
    )


def retrieval_query(question: str, history: list[Turn]) -> str:
    """A follow-up ('what about its QoS?') is searched together with the previous question."""
    previous = [t.content for t in history if t.role == "user"]
    if not previous:
        return question
    short = len(question.split()) <= FOLLOW_UP_MAX_WORDS
    if short or FOLLOW_UP_RE.search(question):
        return f"{previous[-1]} {question}"
    return question


def session_title(question: str, limit: int = TITLE_CHARS) -> str:
    """A session's title: its first question as asked (any language), cut at a word boundary near `limit`."""
    flat = re.sub(r"\s+", " ", question).strip()
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
    return cut.rstrip(" ,;:،؛-") + "…"


class ChatService:
    def __init__(self, pipeline: QueryPipeline) -> None:
        self._pipeline = pipeline
        # Each write below is one statement, atomic by itself: no BEGIN/COMMIT round trips around it.
        self._autocommit = pipeline.engine.execution_options(isolation_level="AUTOCOMMIT")

    # -- chat -------------------------------------------------------------------------------------
    def chat(self, body: ChatRequest, request_id: uuid.UUID) -> ChatResponse:
        """Retrieve, answer, then persist / observe / respond."""
        started = time.perf_counter()
        with self._failures_logged("chat", body.locale, body.session_id, request_id, started):
            prepared = self._prepare(body)
            with span("answer generation", **{"rag.answer_backend": self._pipeline.settings.answer_backend}):
                answer = self._pipeline.answerer.answer(body.question, prepared.retrieval, prepared.history,
                                                        body.locale, prepared.selection)
            return self._conclude("chat", body, request_id, prepared, answer, started)

    def prepare_stream(self, body: ChatRequest, request_id: uuid.UUID) -> Prepared:
        """The part of a streamed chat that can still fail with an HTTP status (before the stream starts)."""
        started = time.perf_counter()
        with self._failures_logged("chat_stream", body.locale, body.session_id, request_id, started):
            return self._prepare(body)

    def stream_events(
        self, body: ChatRequest, request_id: uuid.UUID, prepared: Prepared, started: float,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """`start`, `delta`s as written, then `final`: the whole response, whose `answer` is the verified text
        (with the openai backend it can differ from the deltas: `citation_repairs` says what changed)."""
        yield "start", {"request_id": str(request_id)}
        answer: Answer | None = None
        generation = start_detached_span("answer generation",
                                         **{"rag.answer_backend": self._pipeline.settings.answer_backend})
        try:
            for item in self._pipeline.answerer.stream(body.question, prepared.retrieval, prepared.history,
                                                       body.locale, prepared.selection):
                if isinstance(item, Answer):
                    answer = item
                else:
                    yield "delta", {"text": item}
            assert answer is not None
            if generation is not None:
                generation.end()
            response = self._conclude("chat_stream", body, request_id, prepared, answer, started)
        except Exception as exc:  # noqa: BLE001 - the stream has started: report the failure in-band
            code = error_code_for(exc)
            code = "stream_failed" if code == "internal_error" else code
            log.warning("stream failed: %s", exc)
            if generation is not None and generation.is_recording():
                generation.record_exception(exc)
                generation.end()
            QUERY_ERRORS.labels(error_code=code).inc()
            self._log_failure("chat_stream", body.locale, body.session_id, request_id, code, started)
            yield "error", {"detail": "the answer could not be completed", "error_code": code}
            return
        yield "final", response.model_dump(mode="json")

    # -- the steps ----------------------------------------------------------------------------------
    def _prepare(self, body: ChatRequest) -> Prepared:
        chat_session, history = self._load_history(body.session_id)
        selection = self._selection(body)
        retrieval = self._retrieve(body.question, history, body.locale, body.k, chapter=body.chapter,
                                   selection=selection)
        return Prepared(chat_session, history, retrieval, selection)

    def _load_history(self, session_id: uuid.UUID | None) -> tuple[ChatSession | None, list[Turn]]:
        if session_id is None:
            return None, []
        with Session(self._pipeline.engine) as db:
            chat_session = db.get(ChatSession, session_id)
            if chat_session is None:
                raise NotFound(f"session {session_id}")
            rows = db.exec(
                select(Message).where(Message.session_id == session_id)
                .order_by(Message.id.desc()).limit(HISTORY_MESSAGES)  # type: ignore[union-attr]
            ).all()
        return chat_session, [Turn(role=m.role, content=m.content) for m in reversed(rows)]

    def _selection(self, body: ChatRequest) -> Selection | None:
        if body.selection is None:
            return None
        origin = body.selection.origin
        allowed = {o.lower().rstrip("/") for o in self._pipeline.settings.cors_allowed_origins}
        if origin is not None and origin not in allowed:
            raise InvalidRequest(
                f"selection.page_url: {origin} is not the site; send the page's path (/docs/... or /ur/docs/...) "
                f"or a URL of {', '.join(sorted(allowed)) or 'the site'}"
            )
        return Selection(text=body.selection.text, page_url=body.selection.page_path)

    def _check_chapter(self, chapter: str) -> None:
        """An empty result for a chapter is fine, an unknown chapter is a mistake the caller can fix."""
        known = self._pipeline.retriever.chapters()
        if not known:
            raise InvalidRequest("chapter: this index was built before chapters were recorded; run the "
                                 "ingest-textbook flow once to add them")
        if chapter not in known:
            raise InvalidRequest(f"chapter: unknown chapter {chapter!r}; known chapters: {', '.join(sorted(known))}")

    def _retrieve(self, question: str, history: list[Turn], locale: str, k: int, *, chapter: str | None = None,
                  selection: Selection | None = None) -> Retrieval:
        query = retrieval_query(question, history)
        if selection is not None:
            query = f"{query} {selection.text[:SELECTION_CHARS_IN_QUERY]}"
        retrieval = self._pipeline.retriever.retrieve(query, locale=locale, k=k, chapter=chapter,
                                                      favour_page=selection.page_url if selection else None,
                                                      favour_text=selection.text if selection else None)
        if chapter is not None and not retrieval.chunks:
            self._check_chapter(chapter)
        observe_retrieval(retrieval)
        return retrieval

    def _conclude(self, endpoint: str, body: ChatRequest, request_id: uuid.UUID, prepared: Prepared,
                  answer: Answer, started: float) -> ChatResponse:
        retrieval = prepared.retrieval
        retrieval_ms = round(retrieval.embed_ms + retrieval.search_ms, 3)
        cited = retrieval.chunks if answer.source_order is None else [retrieval.chunks[i] for i in answer.source_order]
        sources = [to_source(c) for c in cited] if answer.covered else []
        cost = self._cost(answer.model, answer.prompt_tokens, answer.completion_tokens, retrieval.embedding_tokens)
        status = "fallback" if answer.is_fallback else "ok" if answer.covered else "not_covered"
        set_attributes(**{"rag.endpoint": endpoint, "rag.locale": body.locale, "rag.covered": answer.covered,
                          "rag.chunks": len(retrieval.chunks), "rag.status": status})
        record_question(body.question)
        known = prepared.chat_session
        session_id = known.id if known else uuid.uuid4()
        self._persist_exchange(
            _row(ChatSession, SESSION_PREFIX, id=session_id, locale=known.locale if known else body.locale,
                 title=known.title if known else session_title(body.question),
                 **({"created_at": known.created_at} if known else {}), last_active_at=utcnow()),
            _row(Message, MESSAGE_PREFIXES[0], session_id=session_id, request_id=request_id, role="user",
                 content=body.question),
            _row(Message, MESSAGE_PREFIXES[1], session_id=session_id, request_id=request_id, role="assistant",
                 content=answer.text, sources=[s.model_dump() for s in sources]),
            _row(QueryLog, QUERY_LOG_PREFIX, request_id=request_id, correlation_id=correlation_id(),
                 session_id=session_id, endpoint=endpoint, locale=body.locale,
                 retrieval_ms=retrieval_ms, generation_ms=round(answer.generation_ms, 3),
                 total_ms=round(elapsed_ms(started), 3),
                 prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                 embedding_tokens=retrieval.embedding_tokens, model=answer.model,
                 embedding_model=self._pipeline.embedding_model, cost_usd=cost, status=status,
                 error_code="llm_fallback" if answer.is_fallback else None, question=body.question),
        )
        total_ms = elapsed_ms(started)
        self._observe_answer(endpoint, answer, retrieval, status, total_ms)
        return ChatResponse(
            answer=answer.text, sources=sources, session_id=session_id, request_id=request_id,
            usage=Usage(prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens,
                        embedding_tokens=retrieval.embedding_tokens, cost_usd=float(cost)),
            latency_ms=Latency(retrieval=retrieval_ms, generation=round(answer.generation_ms, 3),
                               total=round(total_ms, 3)),
            covered=answer.covered, answer_backend=answer.backend,
            citations_verified=answer.covered and answer.citations_verified, citation_repairs=answer.citation_repairs,
        )

    def _cost(self, model: str | None, prompt_tokens: int, completion_tokens: int, embedding_tokens: int) -> Decimal:
        today = date.today()
        cost = cost_usd(model, input_tokens=prompt_tokens, output_tokens=completion_tokens, day=today) if model \
            else Decimal(0)
        return cost + cost_usd(self._pipeline.embedding_model, input_tokens=embedding_tokens, day=today)

    # -- persist ------------------------------------------------------------------------------------
    def _persist_exchange(self, *rows: dict[str, Any]) -> None:
        """The session touched (or created), the two messages and the query_log row (`_row`s of INSERT_EXCHANGE):
        one statement, one round trip."""
        self._write(INSERT_EXCHANGE, {name: value for row in rows for name, value in row.items()},
                    "insert chat_session, message, query_log")

    def _write(self, statement: Any, parameters: dict[str, Any], operation: str) -> None:
        started = time.perf_counter()
        with span("db write", **{"db.system": "postgresql", "db.operation": operation}), \
                self._autocommit.connect() as conn:
            conn.execute(statement, parameters)
        DB_LATENCY.observe(elapsed_ms(started))

    # -- observe ------------------------------------------------------------------------------------
    def _observe_answer(self, endpoint: str, answer: Answer, retrieval: Retrieval, status: str, total_ms: float) -> None:
        GENERATION_LATENCY.labels(backend=answer.backend).observe(answer.generation_ms)
        for kind, count in answer.citation_repairs.items():
            CITATION_FAILURES.labels(kind=kind).inc(count)
        if answer.is_fallback:
            QUERY_ERRORS.labels(error_code="llm_fallback").inc()
        if answer.prompt_tokens:
            TOKENS_USED.labels(kind="prompt", model=answer.model).inc(answer.prompt_tokens)
        if answer.completion_tokens:
            TOKENS_USED.labels(kind="completion", model=answer.model).inc(answer.completion_tokens)
        ANSWERS.labels(backend=answer.backend, covered=str(answer.covered).lower()).inc()
        self._observe_request(endpoint, status, retrieval, total_ms)

    def _observe_request(self, endpoint: str, status: str, retrieval: Retrieval, total_ms: float) -> None:
        if retrieval.embedding_tokens:
            TOKENS_USED.labels(kind="embedding", model=self._pipeline.embedding_model).inc(retrieval.embedding_tokens)
        QUERY_DURATION.labels(endpoint=endpoint, status=status).observe(total_ms / 1000)

    # -- search -----------------------------------------------------------------------------------
    def search(self, body: SearchRequestBody, request_id: uuid.UUID) -> SearchResponse:
        started = time.perf_counter()
        with self._failures_logged("search", body.locale, None, request_id, started):
            retrieval = self._pipeline.retriever.retrieve(body.query, locale=body.locale, k=body.k, chapter=body.chapter)
            if body.chapter is not None and not retrieval.chunks:
                self._check_chapter(body.chapter)
            observe_retrieval(retrieval)
            retrieval_ms = retrieval.embed_ms + retrieval.search_ms
            set_attributes(**{"rag.endpoint": "search", "rag.locale": body.locale, "rag.chunks": len(retrieval.chunks)})
            row = _row(
                QueryLog, QUERY_LOG_PREFIX, request_id=request_id, correlation_id=correlation_id(), endpoint="search",
                locale=body.locale, retrieval_ms=round(retrieval_ms, 3), generation_ms=0,
                total_ms=round(elapsed_ms(started), 3), embedding_tokens=retrieval.embedding_tokens,
                embedding_model=self._pipeline.embedding_model, cost_usd=self._cost(None, 0, 0, retrieval.embedding_tokens),
                status="ok", question=body.query,
            )
            self._write(INSERT_QUERY_LOG, row, "insert query_log")
            total_ms = elapsed_ms(started)
            self._observe_request("search", "ok", retrieval, total_ms)
            results = [
                SearchResult(
                    id=c.id, title=str(c.payload.get("title", "")), url=c.url, heading=str(c.payload.get("heading", "")),
                    locale=str(c.payload.get("locale", "")), snippet=snippet(c.text), text=c.text, score=round(c.score, 6),
                )
                for c in retrieval.chunks
            ]
            return SearchResponse(
                results=results, request_id=request_id,
                latency_ms=Latency(retrieval=round(retrieval_ms, 3), generation=0, total=round(total_ms, 3)),
            )

    # -- failures ---------------------------------------------------------------------------------
    def _failures_logged(self, endpoint: str, locale: str | None, session_id: uuid.UUID | None,
                         request_id: uuid.UUID, started: float) -> "_FailureLogger":
        return _FailureLogger(self, endpoint, locale, session_id, request_id, started)

    def log_client_closed(self, body: ChatRequest, request_id: uuid.UUID, started: float) -> None:
        """The reader went away before the stream's end (retrieval ran; no answer was delivered)."""
        QUERY_ERRORS.labels(error_code="client_closed").inc()
        self._log_failure("chat_stream", body.locale, body.session_id, request_id, "client_closed", started,
                          status="client_closed")

    def _log_failure(self, endpoint: str, locale: str | None, session_id: uuid.UUID | None, request_id: uuid.UUID,
                     error_code: str, started: float, status: str = "error") -> None:
        total_ms = elapsed_ms(started)
        QUERY_DURATION.labels(endpoint=endpoint, status=status).observe(total_ms / 1000)
        try:
            with session_scope(self._pipeline.engine) as db:
                known_session = session_id if session_id and db.get(ChatSession, session_id) else None
                db.add(QueryLog(
                    request_id=request_id, correlation_id=correlation_id(), session_id=known_session,
                    endpoint=endpoint, locale=locale, total_ms=round(total_ms, 3), cost_usd=Decimal(0), status=status,
                    error_code=error_code,
                ))
        except Exception as exc:  # noqa: BLE001 - Postgres itself may be what failed
            log.warning("could not write the query_log row of failed request %s: %s", request_id, exc.__class__.__name__)


class _FailureLogger:
    """Writes a query_log row with the error code when the block raises, then lets the error through."""

    def __init__(self, service: ChatService, endpoint: str, locale: str | None, session_id: uuid.UUID | None,
                 request_id: uuid.UUID, started: float) -> None:
        self._args = (endpoint, locale, session_id, request_id)
        self._service = service
        self._started = started

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        code = error_code_for(exc)
        if code != "database_unavailable":
            self._service._log_failure(*self._args, code, self._started)
        return False


def error_code_for(exc: BaseException) -> str:
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    from app.rag.batcher import EncoderOverloaded
    from app.rag.embeddings import EmbeddingError
    from app.rag.vector_index import IndexUnavailable

    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, InvalidRequest):
        return "invalid_request"
    if isinstance(exc, IndexUnavailable):
        return "index_unavailable"
    if isinstance(exc, EncoderOverloaded):
        return "overloaded"
    if isinstance(exc, EmbeddingError):
        return "embedding_unavailable"
    if isinstance(exc, (OperationalError, PoolTimeoutError)):
        return "database_unavailable"
    return "internal_error"
