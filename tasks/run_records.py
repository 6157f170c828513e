"""The flows' own records of their runs: one `ingest_run` row per ingest, one `secret_rotation` row per rotation
(with its `secret-rotation` artifact), and the id of the Prefect flow run that every such row points back to."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from sqlmodel import Field

from app.core.db import session_scope
from app.core.models import IngestRun, IngestRunBase, SecretRotation
from app.settings import Settings
from tasks.databases import engine_for, insert_row, retry_unless_rejected


def current_flow_run_id() -> str | None:
    """The id of the flow run this code runs in, for the rows that point back to it; None outside a flow run."""
    return str(flow_run.id) if flow_run.id else None


# -- ingest runs ---------------------------------------------------------------------------------------------


class IngestSummary(IngestRunBase):
    """An ingest run as the flow fills it in; `details` of its `ingest_run` row are the fields below."""

    full_rebuild: bool
    status: str = "running"
    chunks_total: int = 0
    embedding_tokens: int = 0
    files: list[dict[str, Any]] = Field(default_factory=list)

    def details(self) -> dict[str, Any]:
        return self.model_dump(include={"files", "chunks_total", "embedding_tokens"})


@task(name="record-ingest-run", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 5, 15],
      retry_condition_fn=retry_unless_rejected)
def record_ingest_run(settings: Settings, summary: IngestSummary, flow_run_id: str | None) -> int:
    """One `ingest_run` row per flow run, whatever its outcome."""
    return insert_row(settings, IngestRun.model_validate(summary.model_dump(include=set(IngestRunBase.model_fields)), update={
        "flow_run_id": flow_run_id, "seconds": round(summary.seconds, 3), "details": summary.details(),
        "finished_at": datetime.now(UTC),
    }))


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
