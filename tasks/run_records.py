"""The flows' own records of their runs: one `ingest_run` row per ingest, one `secret_rotation` row per rotation
(with its `secret-rotation` artifact), and the id of the Prefect flow run that every such row points back to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from app.db import session_scope
from app.models import IngestRun, SecretRotation
from app.settings import Settings
from tasks.databases import engine_for, insert_row, retry_unless_rejected


def current_flow_run_id() -> str | None:
    """The id of the flow run this code runs in, for the rows that point back to it; None outside a flow run."""
    return str(flow_run.id) if flow_run.id else None


# -- ingest runs ---------------------------------------------------------------------------------------------


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


@task(name="record-ingest-run", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 15],
      retry_condition_fn=retry_unless_rejected)
def record_ingest_run(settings: Settings, summary: IngestSummary, flow_run_id: str | None) -> int:
    """One `ingest_run` row per flow run, whatever its outcome."""
    return insert_row(settings, IngestRun(
        flow_run_id=flow_run_id, source=summary.source, collection=summary.collection,
        generation=summary.generation, full_rebuild=summary.full_rebuild, status=summary.status,
        files_seen=summary.files_seen, files_changed=summary.files_changed,
        files_skipped=summary.files_skipped, chunks_added=summary.chunks_added,
        chunks_updated=summary.chunks_updated, chunks_deleted=summary.chunks_deleted,
        embeddings_computed=summary.embeddings_computed, seconds=round(summary.seconds, 3),
        error=summary.error,
        details={k: v for k, v in asdict(summary).items() if k in ("files", "chunks_total", "embedding_tokens")},
        started_at=summary.started_at, finished_at=datetime.now(UTC),
    ))


# -- secret rotations ------------------------------------------------------------------------------------------


@task(name="audit-rotation-start", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2,
      retry_condition_fn=retry_unless_rejected)
def audit_rotation_start(settings: Settings, *, secret_name: str, backend: str, old_version_id: str | None,
                         flow_run_id: str | None) -> int:
    return insert_row(settings, SecretRotation(secret_name=secret_name, backend=backend, old_version_id=old_version_id,
                                               flow_run_id=flow_run_id, status="started"))


@task(name="audit-rotation-finish", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2,
      retry_condition_fn=retry_unless_rejected)
def audit_rotation_finish(settings: Settings, audit_id: int, *, status: str, new_version_id: str | None,
                          error: str | None = None) -> None:
    with session_scope(engine_for(settings)) as db:
        row = db.get(SecretRotation, audit_id)
        assert row is not None
        row.status, row.new_version_id, row.error = status, new_version_id, error
        row.finished_at = datetime.now(UTC)
        db.add(row)


@task(name="publish-rotation-report", cache_policy=NO_CACHE)
def rotation_report(name: str, backend: str, old: str | None, new: str | None, outcome: str) -> None:
    """The `secret-rotation` artifact: version ids and the outcome, never a value."""
    create_markdown_artifact(
        key="secret-rotation",
        markdown=(f"# Rotation of `{name}` ({backend}): {outcome}\n\n| previous version | new version |\n|---|---|\n"
                  f"| {old or '-'} | {new or '-'} |\n\nRunbook: runbooks/secret-rotation.md\n"),
        description="secret rotation (version ids only)",
    )


@dataclass
class Rotation:
    """What the body of `audited_rotation` tells the audit: the new version once it exists, how the rotation is
    shown in the artifact, and, when it fails, whether the target was changed and restored (`rolled_back`)
    and what the body did to undo it."""

    shown_as: str
    new_version_id: str | None = None
    outcome: str = "completed"
    failure_status: str = "failed"
    undone: str | None = None


@contextmanager
def audited_rotation(settings: Settings, *, secret_name: str, backend: str,
                     old_version_id: str | None) -> Iterator[Rotation]:
    """`with audited_rotation(...) as rotation:` around a rotation's steps. A `started` row first; then `completed`
    (or the body's failure status, with the error and what was undone) and the `secret-rotation` artifact, whatever
    happens. The body undoes its own changes before it lets an exception out; values never reach the audit."""
    audit_id = audit_rotation_start(settings, secret_name=secret_name, backend=backend, old_version_id=old_version_id,
                                    flow_run_id=current_flow_run_id())
    rotation = Rotation(shown_as=secret_name)
    try:
        yield rotation
    except Exception as exc:
        undone = f"; {rotation.undone}" if rotation.undone else ""
        audit_rotation_finish(settings, audit_id, status=rotation.failure_status,
                              new_version_id=rotation.new_version_id, error=f"{exc.__class__.__name__}: {exc}{undone}")
        rotation_report(rotation.shown_as, backend, old_version_id, rotation.new_version_id,
                        f"{rotation.failure_status}: {exc}" + (f" ({rotation.undone})" if rotation.undone else ""))
        raise
    audit_rotation_finish(settings, audit_id, status="completed", new_version_id=rotation.new_version_id)
    rotation_report(rotation.shown_as, backend, old_version_id, rotation.new_version_id, rotation.outcome)
