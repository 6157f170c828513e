"""The `deployment` table: one row per deploy-backend run, written at the start and completed at the end."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlmodel import select

from app.core.db import session_scope
from app.core.models import Deployment
from app.settings import Settings
from tasks.databases import engine_for, insert_row, retry_unless_rejected


@task(name="deployment-begin", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)
def deployment_begin(settings: Settings, *, service_id: str, commit_id: str | None, image_url: str | None,
                     flow_run_id: str | None) -> int:
    return insert_row(settings, Deployment(service_id=service_id, commit_id=commit_id, image_url=image_url,
                                           status="started", flow_run_id=flow_run_id))


@task(name="deployment-finish", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)
def deployment_finish(settings: Settings, deployment_id: int, **values: Any) -> None:
    with session_scope(engine_for(settings)) as db:
        row = db.exec(select(Deployment).where(Deployment.id == deployment_id)).one()
        for name, value in values.items():
            setattr(row, name, value)
        row.finished_at = datetime.now(UTC)
        db.add(row)

