"""backup-database: a checksummed, catalogued pg_dump of the service's database, then retention.

When it runs: nightly at 02:00 UTC (prefect.yaml), or on demand from the Prefect UI / CLI.
What it does, in order: catalogue the attempt as in_progress -> check pg_dump is not older than the
server -> pg_dump -Fc in an exported snapshot, streamed to storage under a temporary name with
its sha256 computed on the way (row counts and a schema fingerprint read in the same snapshot) -> read
the object back and give it its final name only if the checksum matches -> store the manifest -> mark
the catalog row completed -> apply grandfather-father-son retention -> publish the catalog as an artifact.
A failed run leaves a `failed` catalog row with its reason, and no finalized object. Two backups never run at once.

When it fails: runbooks/backup-and-restore.md.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from prefect import flow, get_run_logger

from app.ops.backups import BackupManifest, CatalogEntry, retention_plan
from app.settings import get_settings
from flows.cli import flow_parser, run_cli
from flows.parameters import BlockName, StorageKind, secret_block_value
from tasks.catalog import (
    catalog_begin,
    catalog_complete,
    catalog_fail,
    catalog_mark_pruned,
    publish_catalog,
    read_catalog,
)
from tasks.concurrency import exclusive
from tasks.databases import check_pg_dump_version, database_identity, dump_database
from tasks.notify import push_metrics, pushgateway_for
from tasks.run_records import current_flow_run_id
from tasks.storage import (
    backup_storage_for,
    delete_backup_objects,
    dump_name,
    incoming_name,
    store_manifest,
    verify_and_finalize,
)


def new_backup_id(now: datetime | None = None) -> str:
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%S%fZ}"


@flow(name="backup-database", log_prints=True)
def backup_database(storage: StorageKind | None = None, database_url_block: BlockName | None = None) -> dict:
    """Back up the service's database (DATABASE_URL), or the one whose URL a Prefect Secret block holds
    (`database_url_block`: parameters are shown in the UI, so they name secrets and never carry them), to the
    configured storage (local | s3)."""
    logger = get_run_logger()
    settings = get_settings()
    if storage:
        settings = settings.model_copy(update={"backup_storage": storage})
    url = (secret_block_value("database_url_block", database_url_block).get_secret_value() if database_url_block
           else settings.resolved_database_url)
    store = backup_storage_for(settings)
    retry_delay = settings.task_retry_delay_s
    backup_id = new_backup_id()
    temp = incoming_name(dump_name(backup_id))

    # One acquisition for the whole run: no second backup, and no drill claims the catalog during retention.
    with exclusive("backup-database", "backup-catalog"):
        # Catalogued first, so that every failure after it (the version check's too) leaves a `failed` row with
        # its reason where runbooks/backup-and-restore.md looks first.
        catalog_begin(settings, backup_id=backup_id, storage=store.kind,
                      database_name=str(database_identity(url)["dbname"]),
                      flow_run_id=current_flow_run_id())
        started = datetime.now(UTC)
        try:
            versions = check_pg_dump_version.with_options(retry_delay_seconds=retry_delay)(settings, url)
            # A dump that fails half-way (an upload error) is retried from the start into the same temporary name.
            dump = dump_database.with_options(retries=2, retry_delay_seconds=retry_delay)(
                settings, url, store, temp, versions)
            location = verify_and_finalize(store, temp, dump_name(backup_id), dump.sha256, dump.bytes)
            manifest = BackupManifest(
                backup_id=backup_id, database=database_identity(url), server_version=dump.server_version,
                pg_dump_version=dump.pg_dump_version, started_at=started, finished_at=datetime.now(UTC),
                bytes=dump.bytes, sha256=dump.sha256, object_name=dump_name(backup_id),
                row_counts=dump.facts.row_counts, tables_with_primary_key=dump.facts.tables_with_primary_key,
                schema_fingerprint=dump.facts.schema_fingerprint,
            )
            store_manifest(store, backup_id, manifest.model_dump_json(indent=2).encode())
            catalog_complete(settings, backup_id=backup_id, location=location, sha256=dump.sha256, size=dump.bytes,
                             manifest=manifest.model_dump(mode="json"), server_version=dump.server_version,
                             pg_dump_version=dump.pg_dump_version, dump_seconds=dump.seconds)
        except BaseException as exc:
            logger.error("backup %s failed: %s", backup_id, exc)
            delete_backup_objects(store, [backup_id])
            catalog_fail(settings, backup_id=backup_id, reason=f"{exc.__class__.__name__}: {exc}")
            raise
        pruned, catalog_rows = apply_retention(settings)
        for pruned_id, why in pruned.items():
            logger.info("pruned backup %s: %s", pruned_id, why)

    if pushgateway_for(settings):
        push_metrics(settings, "backup_database", {
            "backup_last_success_timestamp_seconds": datetime.now(UTC).timestamp(),
            "backup_size_bytes": float(dump.bytes)})
    publish_catalog(catalog_rows, pruned)
    logger.info("backup %s completed: %d bytes at %s; pruned %d old backups", backup_id, dump.bytes, location,
                len(pruned))
    return {"backup_id": backup_id, "location": location, "sha256": dump.sha256, "bytes": dump.bytes,
            "dump_seconds": dump.seconds, "pruned": list(pruned)}


def apply_retention(settings, now: datetime | None = None) -> tuple[dict[str, str], list[dict]]:
    """Grandfather-father-son; never the newest verified backup, one a drill is reading, or one a restore used
    in the last BACKUP_KEEP_RESTORED_DAYS. Callers hold the `backup-catalog` limit (drills claim backups under it).
    Returns ({pruned id: why}, catalog)."""
    rows = read_catalog(settings)

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    plan = retention_plan(
        [CatalogEntry(r["backup_id"], r["status"], when(r["finished_at"]), r["drill_in_progress"],
                      when(r["last_restored_at"])) for r in rows],
        now=now or datetime.now(UTC), daily=settings.backup_keep_daily, weekly=settings.backup_keep_weekly,
        monthly=settings.backup_keep_monthly, keep_restored_days=settings.backup_keep_restored_days,
    )
    if plan.prune:
        catalog_mark_pruned(settings, plan.prune)  # first: a pruned row can no longer be claimed by a drill
        delete_backup_objects(backup_storage_for(settings), plan.prune)
    return plan.why_pruned, rows


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.backup_database", __doc__)
    parser.add_argument("--storage", choices=["local", "s3"], help="default: BACKUP_STORAGE")
    args = parser.parse_args(argv)
    result = backup_database(storage=args.storage)
    print(f"backup {result['backup_id']}: {result['bytes']} bytes at {result['location']} (sha256 {result['sha256']})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
