"""Tasks on the backup catalog (`backup_catalog`): a backup not catalogued as completed does not exist."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import update
from sqlmodel import Session, col, select

from app.core.db import session_scope
from app.core.models import BackupCatalog, BackupStatus
from app.settings import Settings
from tasks.databases import engine_for, retry_unless_rejected


class NoUsableBackup(LookupError):
    """No backup fits: none waiting for a drill, none verified to restore, or the given id is not usable."""


def as_dict(row: BackupCatalog) -> dict[str, Any]:
    return row.model_dump(mode="json")


@task(name="catalog-begin", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)


def catalog_begin(settings: Settings, *, backup_id: str, storage: str, database_name: str,
                  flow_run_id: str | None) -> None:
    engine = engine_for(settings)
    with session_scope(engine) as db:
        db.add(BackupCatalog(backup_id=backup_id, status=BackupStatus.IN_PROGRESS, storage=storage, database_name=database_name,
                             flow_run_id=flow_run_id))


@task(name="catalog-complete", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)


def catalog_complete(settings: Settings, *, backup_id: str, location: str, sha256: str, size: int,
                     manifest: dict[str, Any], server_version: str, pg_dump_version: str, dump_seconds: float) -> None:
    engine = engine_for(settings)
    with session_scope(engine) as db:
        row = db.exec(select(BackupCatalog).where(BackupCatalog.backup_id == backup_id)).one()
        row.status, row.location, row.sha256, row.bytes = BackupStatus.COMPLETED, location, sha256, size
        row.manifest, row.server_version, row.pg_dump_version = manifest, server_version, pg_dump_version
        row.dump_seconds, row.finished_at = round(dump_seconds, 3), datetime.now(UTC)
        db.add(row)


@task(name="catalog-fail", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)


def catalog_fail(settings: Settings, *, backup_id: str, reason: str) -> None:
    engine = engine_for(settings)
    with session_scope(engine) as db:
        db.exec(update(BackupCatalog).where(col(BackupCatalog.backup_id) == backup_id).values(  # type: ignore[call-overload]
            status=BackupStatus.FAILED, failure_reason=reason[:4000], finished_at=datetime.now(UTC), drill_in_progress=False))


@task(name="claim-backup-for-drill", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)


def claim_backup_for_drill(settings: Settings, backup_id: str | None) -> dict[str, Any]:
    """The newest completed backup not yet verified (or the given one), marked as being read by a drill."""
    engine = engine_for(settings)
    with session_scope(engine) as db:
        query = select(BackupCatalog).with_for_update()
        if backup_id:
            query = query.where(BackupCatalog.backup_id == backup_id,
                                col(BackupCatalog.status).in_(BackupStatus.RESTORABLE))
        else:
            query = query.where(BackupCatalog.status == BackupStatus.COMPLETED).order_by(
                col(BackupCatalog.finished_at).desc())
        row = db.exec(query.limit(1)).first()
        if row is None:
            what = f"backup {backup_id!r} is not completed or verified" if backup_id else \
                "no completed backup is waiting for a drill"
            raise NoUsableBackup(what)
        row.drill_in_progress = True
        db.add(row)
        db.flush()
        return as_dict(row)


@task(name="catalog-drill-result", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)


def catalog_drill_result(settings: Settings, *, backup_id: str, verified: bool, reason: str | None,
                         restore_seconds: float | None) -> None:
    engine = engine_for(settings)
    with session_scope(engine) as db:
        row = db.exec(select(BackupCatalog).where(BackupCatalog.backup_id == backup_id)).one()
        row.drill_in_progress = False
        if verified:
            row.status, row.verified_at, row.failure_reason = BackupStatus.VERIFIED, datetime.now(UTC), None
            row.restore_seconds = round(restore_seconds or 0, 3)
        else:
            row.status, row.failure_reason = BackupStatus.FAILED, (reason or "restore drill failed")[:4000]
        db.add(row)


@task(name="read-catalog", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)


def read_catalog(settings: Settings) -> list[dict[str, Any]]:
    engine = engine_for(settings)
    with Session(engine) as db:
        rows = [as_dict(r) for r in db.exec(select(BackupCatalog).order_by(col(BackupCatalog.started_at).desc()))]
    return rows


@task(name="catalog-mark-pruned", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)


def catalog_mark_pruned(settings: Settings, backup_ids: list[str]) -> None:
    if not backup_ids:
        return
    engine = engine_for(settings)
    with session_scope(engine) as db:
        db.exec(update(BackupCatalog).where(  # type: ignore[call-overload]
            col(BackupCatalog.backup_id).in_(backup_ids), col(BackupCatalog.drill_in_progress).is_(False),
            col(BackupCatalog.status).in_(BackupStatus.RESTORABLE),
        ).values(status=BackupStatus.PRUNED, pruned_at=datetime.now(UTC)))


@task(name="find-backup-to-restore", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)


def find_backup_to_restore(settings: Settings, backup_id: str | None) -> dict[str, Any]:
    """The given backup (completed or verified), or the newest verified one."""
    engine = engine_for(settings)
    with Session(engine) as db:
        query = select(BackupCatalog)
        if backup_id:
            query = query.where(BackupCatalog.backup_id == backup_id,
                                col(BackupCatalog.status).in_(BackupStatus.RESTORABLE))
        else:
            query = query.where(BackupCatalog.status == BackupStatus.VERIFIED).order_by(col(BackupCatalog.finished_at).desc())
        row = db.exec(query.limit(1)).first()
        if row is None:
            raise NoUsableBackup(f"backup {backup_id!r} is not completed or verified" if backup_id
                                  else "there is no verified backup to restore")
        return as_dict(row)


def newest_verified_backup(settings: Settings) -> dict[str, Any] | None:
    """The newest backup a restore drill has proven (by when it was taken), or None. Plain function: the
    freshness check (`python -m flows.check_backup_freshness`) calls it without a Prefect run."""
    with Session(engine_for(settings)) as db:
        row = db.exec(select(BackupCatalog).where(BackupCatalog.status == BackupStatus.VERIFIED)
                      .order_by(col(BackupCatalog.finished_at).desc()).limit(1)).first()
        return as_dict(row) if row else None


@task(name="newest-verified-backup", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)
def find_newest_verified_backup(settings: Settings) -> dict[str, Any] | None:
    return newest_verified_backup(settings)


# status and verified_at first: the UI shows the table's left columns without scrolling.
CATALOG_COLUMNS = ["status", "verified_at", "backup_id", "finished_at", "why", "last_restored_at", "bytes",
                   "restore_seconds", "failure_reason", "storage", "sha256", "started_at"]


def publish_catalog(rows: list[dict[str, Any]], why_pruned: dict[str, str]) -> None:
    """The `backup-catalog` artifact: a new version after every backup and every drill (the UI shows the latest).
    Backups this run pruned say why they went (`why`)."""
    shown = [{**r, "status": BackupStatus.PRUNED, "why": why_pruned[r["backup_id"]]} if r["backup_id"] in why_pruned else r
             for r in rows[:60]]
    create_table_artifact(
        key="backup-catalog",
        table=[{k: r.get(k) for k in CATALOG_COLUMNS} for r in shown] or [{"backup_id": "-", "status": "empty"}],
        description="the newest backups and their status",
    )


@task(name="catalog-mark-restored", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)
def catalog_mark_restored(settings: Settings, backup_id: str) -> None:
    """Retention keeps a backup a restore used for BACKUP_KEEP_RESTORED_DAYS: it may be needed again."""
    with session_scope(engine_for(settings)) as db:
        db.exec(update(BackupCatalog).where(col(BackupCatalog.backup_id) == backup_id).values(  # type: ignore[call-overload]
            last_restored_at=datetime.now(UTC)))
