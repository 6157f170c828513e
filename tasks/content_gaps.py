"""Content-gap tasks: read the week's chat traffic, embed its questions, find the book's nearest sections."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg.rows import dict_row

from app.rag.embeddings import create_embedder
from app.settings import Settings
from tasks.databases import connect

WEEK_REQUESTS_SQL = """
SELECT q.locale, q.status, q.question, f.rating
FROM query_log q
LEFT JOIN LATERAL (SELECT rating FROM feedback WHERE feedback.request_id = q.request_id
                   ORDER BY created_at DESC, id DESC LIMIT 1) f ON true
WHERE q.endpoint IN ('chat', 'chat_stream') AND q.status <> 'error'
  AND q.created_at >= %(start)s AND q.created_at < %(end)s
"""
WEEK_CITATIONS_SQL = """
SELECT s.locale, src->>'url' AS url, src->>'title' AS title, src->>'heading' AS heading
FROM message m JOIN chat_session s ON s.id = m.session_id, jsonb_array_elements(m.sources) AS src
WHERE m.role = 'assistant' AND m.created_at >= %(start)s AND m.created_at < %(end)s
"""


@task(name="read-week-requests", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30], timeout_seconds=600)
def read_week_requests(settings: Settings, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The week's completed chat requests: locale, status, question (if not yet cleared) and the last rating."""
    with connect(settings.resolved_database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(WEEK_REQUESTS_SQL, {"start": start, "end": end}).fetchall()


@task(name="read-week-citations", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30], timeout_seconds=600)
def read_week_citations(settings: Settings, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """One row per source the week's stored answers cited (erased conversations are not there)."""
    with connect(settings.resolved_database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(WEEK_CITATIONS_SQL, {"start": start, "end": end}).fetchall()


@task(name="embed-questions", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30], timeout_seconds=1800)
def embed_questions(settings: Settings, questions: list[str]) -> list[list[float]]:
    """The service's own embedding model, so topics are grouped the way retrieval sees the questions."""
    return create_embedder(settings).embed(questions).vectors if questions else []


@task(name="find-nearest-section", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def find_nearest_section(settings: Settings, service_url: str, question: str, locale: str) -> dict[str, Any] | None:
    """The book's closest section to `question`, from the service's own search (it owns the index)."""
    headers = {"user-agent": "textbook-ops-content-gaps"}
    if settings.probe_api_key is not None:
        headers["x-api-key"] = settings.probe_api_key.get_secret_value()
    response = httpx.post(f"{service_url.rstrip('/')}/v1/search", json={"query": question, "k": 1, "locale": locale},
                          headers=headers, timeout=settings.probe_timeout_s)
    response.raise_for_status()
    results = response.json()["results"]
    if not results:
        return None
    best = results[0]
    return {"title": best["title"], "heading": best["heading"], "url": best["url"], "score": best["score"]}
