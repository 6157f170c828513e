"""restore-database: real recovery. Restore a backup into a named database without risking the live one.

When it runs: only when an operator triggers it (Prefect UI or CLI); no schedule.
What it does, in order: pick the backup (given id, default the newest verified) -> refuse a non-empty
target unless `confirm` equals the target's name -> download and verify the checksum -> restore into a
new staging database -> validate it against the manifest -> only then switch: the old target is renamed
to `<target>__before_<time>` (kept, never dropped) and the staging database takes the target's name.
A failed restore drops the staging database and leaves the target exactly as it was.

Runbook: runbooks/backup-and-restore.md.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from app.settings import get_settings
from flows.cli import flow_parser, run_cli
from flows.parameters import BackupId, DatabaseName
from tasks.catalog import catalog_mark_restored, find_backup_to_restore
from tasks.databases import (
    RefusingToOverwrite,
    create_database,
    database_exists,
    database_has_tables,
    drop_database,
    inspect_database,
    restore_dump,
    switch_databases,
)
from tasks.quality import validate_restore
from tasks.storage import backup_storage_for, download_backup, verify_backup_checksum


@flow(name="restore-database", log_prints=True)
def restore_database(target: DatabaseName, backup_id: BackupId | None = None, confirm: DatabaseName | None = None) -> dict:
    """Restore a backup into `target` (a database name); replacing a non-empty one needs confirm=<target>."""
    logger = get_run_logger()
    settings = get_settings()
    backup = find_backup_to_restore(settings, backup_id)
    exists = database_exists(settings, target)
    if exists and database_has_tables(settings, target) and confirm != target:
        given = "no confirm was given" if confirm is None else f"confirm={confirm!r} was given"
        raise RefusingToOverwrite(
            f"database {target!r} is not empty and {given}: replacing it needs confirm={target!r} "
            "(the current one is kept as a renamed copy)"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    staging = f"{target}__restore_{stamp}"
    previous = f"{target}__before_{stamp}" if exists else None
    store = backup_storage_for(settings.model_copy(update={"backup_storage": backup["storage"]}))
    workdir = Path(tempfile.mkdtemp(prefix="restore-database-"))
    started = time.perf_counter()
    try:
        dump_path = download_backup(store, backup["backup_id"], workdir)
        verify_backup_checksum(dump_path, backup["sha256"])
        create_database(settings, staging, owner=settings.db_user)
        restore_dump(settings, dump_path, staging, jobs=settings.restore_jobs, role=settings.db_user)
        validate_restore(backup["manifest"], inspect_database(settings, staging), [])
        switch_databases(settings, staging=staging, target=target, keep_previous_as=previous)
        catalog_mark_restored(settings, backup["backup_id"])  # retention keeps it BACKUP_KEEP_RESTORED_DAYS
    except BaseException:
        drop_database(settings, staging)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - started
    logger.info("restored backup %s into %s in %.1f s; previous database kept as %s", backup["backup_id"], target,
                seconds, previous or "-")
    create_markdown_artifact(
        key="restore-database",
        markdown=(f"# Restored `{backup['backup_id']}` into `{target}`\n\n| seconds | previous database kept as |\n"
                  f"|---:|---|\n| {seconds:.1f} | {previous or '(target did not exist)'} |\n"),
    )
    return {"backup_id": backup["backup_id"], "target": target, "previous": previous, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.restore_database", __doc__)
    parser.add_argument("--target", required=True, help="database name to restore into")
    parser.add_argument("--backup-id", help="default: the newest verified backup")
    parser.add_argument("--confirm", help="the target's name again, to replace a non-empty database")
    args = parser.parse_args(argv)
    result = restore_database(target=args.target, backup_id=args.backup_id, confirm=args.confirm)
    print(f"restored {result['backup_id']} into {result['target']}; previous: {result['previous'] or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
