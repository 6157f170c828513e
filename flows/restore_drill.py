"""restore-drill: prove a backup is usable by restoring it into a scratch database and checking it.

When it runs: daily at 03:30 UTC (after the 02:00 backup), or on demand with a backup id.
What it does, in order: take the newest completed backup not yet verified (or the given one) -> download
it -> verify its sha256 against the catalog -> create a scratch database with a unique name ->
pg_restore -j -> validate with Great Expectations against the manifest (tables, exact row counts,
primary keys, key tables not empty, schema fingerprint) -> record the RTO (download + restore +
validation) -> mark the backup verified, or failed with the reason -> always drop the scratch database
-> publish the result (every check, every table's rows) and the catalog again as artifacts, and push
the metrics to a Pushgateway when one is configured.

When it fails: the catalog row says why; runbooks/backup-and-restore.md.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

# Great Expectations takes ~2 s to import: load it with the flow's module (worker start), not inside the drill.
import great_expectations  # noqa: F401
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from app.settings import get_settings
from flows.cli import flow_parser, run_cli
from flows.parameters import BackupId
from tasks.catalog import catalog_drill_result, claim_backup_for_drill, publish_catalog, read_catalog
from tasks.concurrency import exclusive
from tasks.databases import DatabaseFacts, create_database, drop_database, inspect_database, restore_dump
from tasks.notify import push_metrics
from tasks.quality import ExpectationOutcome, RestoreValidationFailed, validate_restore
from tasks.storage import backup_storage_for, download_backup, verify_backup_checksum

KEY_TABLES = ["public.alembic_version"]


def scratch_name(backup_id: str) -> str:
    return f"restore_drill_{backup_id.lower()[:22]}_{int(time.time())}"


@flow(name="restore-drill", log_prints=True)
def restore_drill(backup_id: BackupId | None = None) -> dict:
    """Restore a backup into a scratch database, validate it, and mark it verified (or failed)."""
    logger = get_run_logger()
    settings = get_settings()
    with exclusive("backup-catalog"):
        backup = claim_backup_for_drill(settings, backup_id)
    backup_id = backup["backup_id"]
    store = backup_storage_for(settings.model_copy(update={"backup_storage": backup["storage"]}))
    scratch = scratch_name(backup_id)
    workdir = Path(tempfile.mkdtemp(prefix="restore-drill-"))
    started = time.perf_counter()
    verified, reason, rto, checks, facts = False, None, None, [], None
    try:
        dump_path = download_backup(store, backup_id, workdir)
        verify_backup_checksum(dump_path, backup["sha256"])
        create_database(settings, scratch)
        restore_seconds = restore_dump(settings, dump_path, scratch, jobs=settings.restore_jobs)
        facts = inspect_database(settings, scratch)
        try:
            checks = validate_restore(backup["manifest"], facts, KEY_TABLES)
        except RestoreValidationFailed as exc:
            checks = exc.outcomes
            raise
        rto = time.perf_counter() - started
        verified = True
        logger.info("backup %s verified: restore %.1f s, RTO %.1f s", backup_id, restore_seconds, rto)
    except BaseException as exc:
        reason = f"{exc.__class__.__name__}: {exc}"
        logger.error("restore drill of %s failed: %s", backup_id, reason)
        raise
    finally:
        drop_database(settings, scratch)
        shutil.rmtree(workdir, ignore_errors=True)
        catalog_drill_result(settings, backup_id=backup_id, verified=verified, reason=reason, restore_seconds=rto)
        report(settings, backup, verified, reason, rto, checks, facts)
        publish_catalog(read_catalog(settings), [])  # the backup run's catalog artifact predates this verdict
    return {"backup_id": backup_id, "verified": True, "rto_seconds": rto, "scratch_database": scratch}


def report(settings, backup: dict, verified: bool, reason: str | None, rto: float | None,
           checks: list[ExpectationOutcome], facts: DatabaseFacts | None) -> None:
    now = datetime.now(UTC).timestamp()
    values = {"restore_drill_success": 1.0 if verified else 0.0, "restore_drill_duration_seconds": rto or 0.0}
    if verified:
        values["backup_last_verified_timestamp_seconds"] = now
    try:
        push_metrics(settings, "restore_drill", values)
    except Exception as exc:  # noqa: BLE001 - a metrics outage must not hide the drill's own result
        get_run_logger().warning("could not push drill metrics: %s", exc)
    lines = [
        f"# Restore drill of `{backup['backup_id']}`: {'verified' if verified else 'FAILED'}",
        "",
        "| backup | bytes | sha256 | RTO seconds | result |",
        "|---|---:|---|---:|---|",
        f"| {backup['backup_id']} | {backup.get('bytes')} | `{(backup.get('sha256') or '')[:16]}…` | "
        f"{rto:.2f} | {'verified' if verified else reason} |" if rto is not None else
        f"| {backup['backup_id']} | {backup.get('bytes')} | `{(backup.get('sha256') or '')[:16]}…` | - | {reason} |",
    ]
    if checks:
        lines += ["", "## Checks", "", "| check | of | result | details |", "|---|---|---|---|"]
        lines += [f"| {c.expectation} | {c.column} | {'PASS' if c.success else 'FAIL'} | {c.details} |" for c in checks]
    if facts is not None:
        expected = backup["manifest"]["row_counts"]
        lines += ["", "## Tables", "", "| table | rows in the manifest | rows restored |", "|---|---:|---:|"]
        lines += [f"| {t} | {expected.get(t, '-')} | {facts.row_counts.get(t, '-')} |"
                  for t in sorted(set(expected) | set(facts.row_counts))]
    if not verified:
        lines += ["", "See runbooks/backup-and-restore.md."]
    create_markdown_artifact(key="restore-drill", markdown="\n".join(lines), description="restore drill result")


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.restore_drill", __doc__)
    parser.add_argument("--backup-id", help="default: the newest completed backup not yet verified")
    args = parser.parse_args(argv)
    result = restore_drill(backup_id=args.backup_id)
    print(f"backup {result['backup_id']} verified; RTO {result['rto_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
