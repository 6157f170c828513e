"""Tasks that write to the service's Postgres database."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from app.db import create_db_engine, session_scope
from app.models import IngestRun
from app.settings import Settings


@dataclass
class IngestSummary:
    source: str
    collection: str
    full_rebuild: bool
    status: str = "running"
    generation: str | None = None
    files_seen: int = 0
    files_changed: int = 0
    files_skipped: int = 0
    chunks_added: int = 0
    chunks_updated: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0
    embeddings_computed: int = 0
    embedding_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@task(name="record-ingest-run", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 15])
def record_ingest_run(settings: Settings, summary: IngestSummary, flow_run_id: str | None) -> int:
    """One `ingest_run` row per flow run, whatever its outcome."""
    engine = create_db_engine(settings)
    try:
        with session_scope(engine) as db:
            row = IngestRun(
                flow_run_id=flow_run_id, source=summary.source, collection=summary.collection,
                generation=summary.generation, full_rebuild=summary.full_rebuild, status=summary.status,
                files_seen=summary.files_seen, files_changed=summary.files_changed,
                files_skipped=summary.files_skipped, chunks_added=summary.chunks_added,
                chunks_updated=summary.chunks_updated, chunks_deleted=summary.chunks_deleted,
                embeddings_computed=summary.embeddings_computed, seconds=round(summary.seconds, 3),
                error=summary.error,
                details={k: v for k, v in asdict(summary).items() if k in ("files", "chunks_total", "embedding_tokens")},
                started_at=summary.started_at, finished_at=datetime.now(UTC),
            )
            db.add(row)
            db.flush()
            assert row.id is not None
            return row.id
    finally:
        engine.dispose()
