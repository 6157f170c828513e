"""Prometheus metrics. With METRICS_MULTIPROC_DIR set (several uvicorn workers), prometheus_client's
multiprocess mode aggregates every worker's values at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

MS_BUCKETS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)

QUERY_DURATION = Histogram(
    "rag_query_duration_seconds", "End-to-end duration of a query request", ["endpoint", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 8, 10, 30),
)
QUERY_ERRORS = Counter("rag_query_errors_total", "Failed queries by error code", ["error_code"])
TOKENS_USED = Counter("rag_tokens_used_total", "Tokens used", ["kind", "model"])
VECTOR_SEARCH_LATENCY = Histogram("rag_vector_search_latency_ms", "Vector index search latency (ms)", buckets=MS_BUCKETS)
EMBEDDING_LATENCY = Histogram("rag_query_embedding_latency_ms", "Query embedding latency (ms)", buckets=MS_BUCKETS)
GENERATION_LATENCY = Histogram(
    "rag_llm_generation_latency_ms", "Answer generation latency (ms)", ["backend"], buckets=MS_BUCKETS
)
DB_LATENCY = Histogram("rag_db_write_latency_ms", "Time spent writing a query's rows to Postgres (ms)",
                       buckets=MS_BUCKETS)
ANSWERS = Counter("rag_answers_total", "Answers by backend and coverage", ["backend", "covered"])


class ActiveSessionsCollector:
    """rag_active_sessions, read from Postgres at scrape time so every worker agrees."""

    def __init__(self, engine: Any, window_s: int) -> None:
        self._engine = engine
        self._window_s = window_s

    def collect(self) -> Any:
        from sqlalchemy import func, select

        from app.models import ChatSession

        gauge = GaugeMetricFamily("rag_active_sessions", "Chat sessions active in the last 30 minutes")
        since = datetime.now(UTC) - timedelta(seconds=self._window_s)
        try:
            with self._engine.connect() as conn:
                value = conn.execute(
                    select(func.count()).select_from(ChatSession).where(ChatSession.last_active_at >= since)
                ).scalar_one()
        except Exception:  # noqa: BLE001 - a scrape must not fail because Postgres is down
            return
        gauge.add_metric([], float(value))
        yield gauge


def render_metrics(engine: Any, window_s: int, multiprocess: bool) -> tuple[bytes, str]:
    if multiprocess:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    sessions = CollectorRegistry()
    sessions.register(ActiveSessionsCollector(engine, window_s))
    return generate_latest(registry) + generate_latest(sessions), CONTENT_TYPE_LATEST
