"""SQLModel tables. Alembic (migrations/) owns the schema; these are the source for autogenerate."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timestamp(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default_factory=utcnow if not nullable else None,
        sa_type=sa.DateTime(timezone=True),
        nullable=nullable,
        index=index,
    )


class ChatSession(SQLModel, table=True):
    __tablename__ = "chat_session"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    locale: str = Field(default="en", max_length=8)
    created_at: datetime = _timestamp()
    last_active_at: datetime = _timestamp(index=True)
    title: str | None = Field(default=None, max_length=200, sa_column_kwargs={"comment": "from the first question"})


class Message(SQLModel, table=True):
    __tablename__ = "message"

    id: int | None = Field(default=None, primary_key=True)
    session_id: uuid.UUID = Field(foreign_key="chat_session.id", index=True, ondelete="CASCADE")
    request_id: uuid.UUID | None = Field(default=None, index=True)
    role: str = Field(max_length=16, sa_column_kwargs={"comment": "user | assistant"})
    content: str = Field(sa_type=sa.Text)
    sources: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONB)
    created_at: datetime = _timestamp()


class QueryLog(SQLModel, table=True):
    __tablename__ = "query_log"
    __table_args__ = (
        sa.Index("ix_query_log_question_kept_created_at", "created_at", postgresql_where=sa.text("question IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: uuid.UUID = Field(unique=True)
    correlation_id: uuid.UUID | None = Field(
        default=None, index=True, sa_column_kwargs={"comment": "the client's X-Request-ID, if it sent one"},
    )
    session_id: uuid.UUID | None = Field(default=None, index=True)
    endpoint: str = Field(max_length=32)
    locale: str | None = Field(default=None, max_length=8)
    retrieval_ms: float | None = None
    generation_ms: float | None = None
    total_ms: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    model: str | None = Field(default=None, max_length=100)
    embedding_model: str | None = Field(default=None, max_length=100)
    cost_usd: Decimal = Field(default=Decimal("0"), max_digits=14, decimal_places=8)
    status: str = Field(max_length=16, sa_column_kwargs={"comment": "ok | not_covered | fallback | error"})
    error_code: str | None = Field(default=None, max_length=64)
    question: str | None = Field(default=None, sa_type=sa.Text, sa_column_kwargs={
        "comment": "as asked; cleared after QUERY_TEXT_RETENTION_DAYS or on erasure"})
    created_at: datetime = _timestamp(index=True)


class Feedback(SQLModel, table=True):
    __tablename__ = "feedback"
    __table_args__ = (sa.CheckConstraint("rating IN (-1, 1)", name="feedback_rating_is_plus_or_minus_one"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: uuid.UUID = Field(foreign_key="query_log.request_id", unique=True, ondelete="CASCADE")
    rating: int = Field(sa_type=sa.SmallInteger)
    comment: str | None = Field(default=None, max_length=2000)
    created_at: datetime = _timestamp()


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    key_prefix: str = Field(max_length=16, sa_column_kwargs={"comment": "first characters, to recognise a key"})
    key_hash: str = Field(max_length=128, unique=True, sa_column_kwargs={"comment": "sha256 of the key"})
    scopes: list[str] = Field(default_factory=list, sa_type=JSONB)
    created_at: datetime = _timestamp()
    expires_at: datetime | None = _timestamp(nullable=True)
    revoked_at: datetime | None = _timestamp(nullable=True)


class IngestRunBase(SQLModel):
    """What an ingest run reports: the flow fills it in as it goes (tasks/run_records.py's IngestSummary)."""

    source: str = Field(sa_type=sa.Text)
    collection: str = Field(max_length=200)
    generation: str | None = Field(default=None, max_length=100)
    full_rebuild: bool = False
    status: str = Field(max_length=16, sa_column_kwargs={"comment": "completed | unchanged | failed"})
    files_seen: int = 0
    files_changed: int = 0
    files_skipped: int = 0
    chunks_added: int = 0
    chunks_updated: int = 0
    chunks_deleted: int = 0
    embeddings_computed: int = 0
    seconds: float = 0.0
    error: str | None = Field(default=None, sa_type=sa.Text)
    started_at: datetime = _timestamp()


class IngestRun(IngestRunBase, table=True):
    __tablename__ = "ingest_run"

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: uuid.UUID | None = Field(default=None, index=True)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    finished_at: datetime | None = _timestamp(nullable=True)


class BackupStatus:
    """The `backup_catalog.status` values, in the order a backup goes through them."""

    IN_PROGRESS: Final = "in_progress"
    COMPLETED: Final = "completed"  # dumped, checksummed and stored
    VERIFIED: Final = "verified"  # and restored by a drill
    FAILED: Final = "failed"
    PRUNED: Final = "pruned"  # removed by the retention policy
    RESTORABLE: Final = (COMPLETED, VERIFIED)


class BackupCatalog(SQLModel, table=True):
    """One row per backup attempt. A backup that is not `completed` or `verified` here does not exist."""

    __tablename__ = "backup_catalog"

    id: int | None = Field(default=None, primary_key=True)
    backup_id: str = Field(max_length=64, unique=True)
    status: str = Field(max_length=16, index=True, sa_column_kwargs={"comment": " | ".join((
        BackupStatus.IN_PROGRESS, BackupStatus.COMPLETED, BackupStatus.VERIFIED, BackupStatus.FAILED,
        BackupStatus.PRUNED))})
    storage: str = Field(max_length=16, sa_column_kwargs={"comment": "local | s3"})
    location: str | None = Field(default=None, sa_type=sa.Text)
    sha256: str | None = Field(default=None, max_length=64)
    bytes: int | None = Field(default=None, sa_type=sa.BigInteger)
    database_name: str = Field(max_length=200)
    server_version: str | None = Field(default=None, max_length=100)
    pg_dump_version: str | None = Field(default=None, max_length=100)
    flow_run_id: uuid.UUID | None = None
    started_at: datetime = _timestamp()
    finished_at: datetime | None = _timestamp(nullable=True)
    dump_seconds: float | None = None
    verified_at: datetime | None = _timestamp(nullable=True)
    restore_seconds: float | None = Field(default=None, sa_column_kwargs={"comment": "RTO measured by the last drill"})
    drill_in_progress: bool = False
    failure_reason: str | None = Field(default=None, sa_type=sa.Text)
    pruned_at: datetime | None = _timestamp(nullable=True)
    manifest: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    last_restored_at: datetime | None = _timestamp(nullable=True)  # retention keeps it BACKUP_KEEP_RESTORED_DAYS


class CostDaily(SQLModel, table=True):
    """One row per day, written by the cost-report flow (running it twice gives the same row)."""

    __tablename__ = "cost_daily"

    day: date = Field(primary_key=True, sa_type=sa.Date)
    queries: int = 0
    prompt_tokens: int = Field(default=0, sa_type=sa.BigInteger)
    completion_tokens: int = Field(default=0, sa_type=sa.BigInteger)
    embedding_tokens: int = Field(default=0, sa_type=sa.BigInteger)
    variable_cost_usd: Decimal = Field(default=Decimal("0"), max_digits=14, decimal_places=8)
    fixed_cost_usd: Decimal = Field(default=Decimal("0"), max_digits=14, decimal_places=8)
    total_cost_usd: Decimal = Field(default=Decimal("0"), max_digits=14, decimal_places=8)
    computed_at: datetime = _timestamp()


class SecretRotation(SQLModel, table=True):
    """The audit trail of secret rotations: names and version ids, never a value."""

    __tablename__ = "secret_rotation"

    id: int | None = Field(default=None, primary_key=True)
    secret_name: str = Field(max_length=200, index=True)
    backend: str = Field(max_length=32, sa_column_kwargs={"comment": "prefect | aws"})
    old_version_id: str | None = Field(default=None, max_length=100)
    new_version_id: str | None = Field(default=None, max_length=100)
    flow_run_id: uuid.UUID | None = None
    status: str = Field(max_length=16, sa_column_kwargs={"comment": "started | completed | failed | rolled_back"})
    error: str | None = Field(default=None, sa_type=sa.Text)
    started_at: datetime = _timestamp()
    finished_at: datetime | None = _timestamp(nullable=True)


class RateLimitCounter(SQLModel, table=True):
    """Requests per bucket and window, shared by every worker (app/http/rate_limit.py). Unlogged: a crash only resets
    the counters. Windows older than the previous one are pruned by the limiter itself."""

    __tablename__ = "rate_limit_counter"
    __table_args__ = {"prefixes": ["UNLOGGED"]}

    bucket: str = Field(primary_key=True, max_length=200, sa_column_kwargs={"comment": "key:<id> | addr:<address>"})
    window_start: datetime = Field(primary_key=True, sa_type=sa.DateTime(timezone=True))
    hits: int = Field(default=0, sa_type=sa.Integer)


class Deployment(SQLModel, table=True):
    """One row per deploy-backend run: what was deployed, the gates' results, and how it ended."""

    __tablename__ = "deployment"

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: uuid.UUID | None = Field(default=None, index=True)
    service_id: str = Field(max_length=100)
    commit_id: str | None = Field(default=None, max_length=64)
    image_url: str | None = Field(default=None, max_length=500)
    image_digest: str | None = Field(default=None, max_length=71, index=True,
                                     sa_column_kwargs={"comment": "sha256:... of the image deployed"})
    previous_image_digest: str | None = Field(default=None, max_length=71,
                                              sa_column_kwargs={"comment": "the digest a rollback redeploys"})
    render_deploy_id: str | None = Field(default=None, max_length=100)
    previous_deploy_id: str | None = Field(default=None, max_length=100,
                                           sa_column_kwargs={"comment": "the deploy that was live before"})
    rollback_deploy_id: str | None = Field(default=None, max_length=100)
    status: str = Field(max_length=16, index=True, sa_column_kwargs={
        "comment": "started | live | failed | rolled_back | rollback_failed | refused"})
    reason: str | None = Field(default=None, sa_type=sa.Text)
    backup_id: str | None = Field(default=None, max_length=64)
    gates: dict[str, Any] = Field(default_factory=dict, sa_type=JSONB)
    release_notes: str | None = Field(default=None, sa_type=sa.Text)
    started_at: datetime = _timestamp()
    finished_at: datetime | None = _timestamp(nullable=True)


class ProbeResult(SQLModel, table=True):
    """One check of one synthetic probe round (flows/synthetic_probe.py): what the service answered, how fast."""

    __tablename__ = "probe_result"

    id: int | None = Field(default=None, primary_key=True)
    round_id: uuid.UUID = Field(index=True, sa_column_kwargs={"comment": "the checks of one probe run share it"})
    flow_run_id: uuid.UUID | None = None
    base_url: str = Field(max_length=500)
    check_name: str = Field(max_length=32, sa_column_kwargs={"comment": "health | ready | canary"})
    success: bool
    status_code: int | None = None
    seconds: float
    detail: str | None = Field(default=None, sa_type=sa.Text)
    checked_at: datetime = _timestamp(index=True)


class GameDay(SQLModel, table=True):
    """One game day (flows/game_day.py): a real fault injected, the alert that caught it, the runbook that fixed it."""

    __tablename__ = "game_day"

    id: int | None = Field(default=None, primary_key=True)
    scenario: str = Field(max_length=40, index=True)
    environment: str = Field(max_length=20)
    mode: str = Field(max_length=20, sa_column_kwargs={"comment": "automatic | practice (a person runs the steps)"})
    status: str = Field(max_length=20, sa_column_kwargs={"comment": "running | passed | failed"})
    flow_run_id: uuid.UUID | None = None
    started_at: datetime = _timestamp(index=True)
    finished_at: datetime | None = _timestamp(nullable=True)
    inject_seconds: float | None = None
    detect_seconds: float | None = Field(default=None, sa_column_kwargs={"comment": "fault injected -> alert at Alertmanager"})
    mitigate_seconds: float | None = Field(default=None, sa_column_kwargs={"comment": "alert -> runbook steps done"})
    recover_seconds: float | None = Field(default=None, sa_column_kwargs={"comment": "steps done -> probe green, alert resolved"})
    mttr_seconds: float | None = Field(default=None, sa_column_kwargs={"comment": "fault injected -> recovered"})
    detected_by: str | None = Field(default=None, max_length=100)
    steps: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONB,
                                        sa_column_kwargs={"comment": "each runbook step: command, exit code, seconds"})
    failure_reason: str | None = Field(default=None, sa_type=sa.Text)
