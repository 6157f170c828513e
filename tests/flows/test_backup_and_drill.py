"""Backups and restore drills on real parts: Postgres, pg_dump/pg_restore, local folders, moto's S3."""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psycopg
import pytest
from prefect.artifacts import Artifact
from sqlmodel import Session, select

from app.core.db import create_db_engine
from app.core.models import BackupCatalog, ChatSession
from app.ops.backups import ChecksumMismatch
from app.settings import get_settings
from flows.backup_database import apply_retention, backup_database
from flows.restore_drill import restore_drill
from tasks import storage as storage_module
from tasks.catalog import NoUsableBackup
from tasks.databases import DatabaseLoginRejected, DatabaseNotFound, DatabaseUnreachable, PgDumpTooOld
from tests.conftest import APP_PASSWORD, free_port
from tests.support.moto import MotoServer
from tests.support.webhook import fake_pushgateway as pushgateway_recorder

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def backup_env(settings, tmp_path, settings_env):
    """Fresh backup folder and catalog for each test; fast retries."""
    settings_env({"BACKUP_DIR": str(tmp_path / "backups"), "TASK_RETRY_DELAY_S": "0"})
    engine = create_db_engine(settings)
    with Session(engine) as db:
        for row in db.exec(select(BackupCatalog)).all():
            db.delete(row)
        db.add(ChatSession(locale="en"))  # the dump has real rows to count
        db.commit()
    yield tmp_path / "backups"
    engine.dispose()


def catalog(settings) -> dict[str, BackupCatalog]:
    engine = create_db_engine(settings)
    with Session(engine) as db:
        rows = {r.backup_id: r for r in db.exec(select(BackupCatalog)).all()}
    engine.dispose()
    return rows


def scratch_databases(pg_cluster) -> list[str]:
    with psycopg.connect(pg_cluster.superuser_dsn()) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'restore_drill_%'")]


def test_backup_then_drill_verifies_it(settings, backup_env, pg_cluster):
    result = backup_database()
    files = sorted(p.name for p in backup_env.iterdir() if p.is_file())
    assert files == [f"{result['backup_id']}.dump", f"{result['backup_id']}.manifest.json"]
    row = catalog(settings)[result["backup_id"]]
    assert row.status == "completed" and row.sha256 == result["sha256"] and row.bytes == result["bytes"]
    assert row.manifest["row_counts"]["public.chat_session"] >= 1
    assert "password" not in str(row.manifest).lower() and "test-app-password" not in str(row.manifest)

    drill = restore_drill()
    row = catalog(settings)[result["backup_id"]]
    assert drill["backup_id"] == result["backup_id"] and row.status == "verified"
    # The UI shows each key's latest artifact: the catalog as the drill left it, status and verified_at first.
    [shown] = json.loads(Artifact.get("backup-catalog").data)
    assert list(shown)[:2] == ["status", "verified_at"]
    assert (shown["backup_id"], shown["status"], datetime.fromisoformat(shown["verified_at"])) == (
        result["backup_id"], "verified", row.verified_at)
    report = Artifact.get("restore-drill").data
    for check in ("| expect_column_values_to_be_in_set | present | PASS |",
                  "| expect_column_pair_values_to_be_equal | expected_rows=restored_rows | PASS |",
                  "| schema_fingerprint_equal | schema | PASS |"):
        assert check in report, report
    sessions = row.manifest["row_counts"]["public.chat_session"]
    assert f"| public.chat_session | {sessions} | {sessions} |" in report
    assert row.restore_seconds and row.restore_seconds > 0 and not row.drill_in_progress
    assert scratch_databases(pg_cluster) == []
    with pytest.raises(NoUsableBackup):
        restore_drill()  # nothing left to verify


def test_corrupted_dump_fails_the_drill_with_checksum_mismatch(settings, backup_env, pg_cluster):
    result = backup_database()
    dump = backup_env / f"{result['backup_id']}.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatch, match="checksum mismatch"):
        restore_drill()
    row = catalog(settings)[result["backup_id"]]
    assert row.status == "failed" and "checksum mismatch" in row.failure_reason
    assert scratch_databases(pg_cluster) == []


def test_interrupted_upload_is_never_catalogued_as_completed(settings, backup_env, monkeypatch):
    real_write = storage_module.LocalBackupStorage.write_stream

    def write_half_then_fail(self, name, stream):
        class Interrupted:
            def __init__(self):
                self.sent = 0

            def read(self, size=-1):
                data = stream.read(size)
                self.sent += len(data)
                if self.sent > 1000:
                    raise ConnectionResetError("upload interrupted")
                return data

        return real_write(self, name, Interrupted())

    monkeypatch.setattr(storage_module.LocalBackupStorage, "write_stream", write_half_then_fail)
    with pytest.raises(ConnectionResetError):
        backup_database()
    rows = list(catalog(settings).values())
    assert [r.status for r in rows] == ["failed"] and "upload interrupted" in rows[0].failure_reason
    assert [p for p in backup_env.rglob("*") if p.is_file()] == []


def url_in_block(url: str, name: str = "backup-target-url") -> str:
    """A Prefect Secret block holding a database URL, as an operator would create one; returns its name."""
    from prefect.blocks.system import Secret

    Secret(value=url).save(name, overwrite=True)
    return name


@pytest.fixture
def connection_attempts(monkeypatch) -> list[str]:
    """Every psycopg connection opened during the test (the catalog's SQLAlchemy engine's too)."""
    from tasks import databases as postgres_tasks

    attempts, real_connect = [], psycopg.connect

    def counting_connect(*args, **kwargs):
        attempts.append(f"{args[0] if args else kwargs.get('conninfo', '')} {kwargs.get('password', '')}")
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(postgres_tasks.psycopg, "connect", counting_connect)
    return attempts


def test_unreachable_postgres_is_retried_then_fails_clearly(settings, backup_env, connection_attempts):
    dead_port = free_port()
    dead = f"postgresql+psycopg://textbook_app:x@127.0.0.1:{dead_port}/textbook"
    with pytest.raises(DatabaseUnreachable, match="cannot connect to Postgres at 127.0.0.1"):
        backup_database(database_url_block=url_in_block(dead))
    assert len([a for a in connection_attempts if f":{dead_port}/" in a]) == 4  # the version check's try + 3 retries
    [row] = catalog(settings).values()
    assert row.status == "failed" and row.failure_reason.startswith("DatabaseUnreachable: cannot connect to Postgres")


@pytest.mark.parametrize(("url_of", "error", "message"), [
    (lambda port: f"postgresql+psycopg://textbook_app:wrong-password@127.0.0.1:{port}/textbook",
     DatabaseLoginRejected, 'password authentication failed for user "textbook_app"; check the user and password'),
    (lambda port: f"postgresql+psycopg://textbook_app:{APP_PASSWORD}@127.0.0.1:{port}/no_such_db",
     DatabaseNotFound, 'database "no_such_db" does not exist; check the database name'),
], ids=["wrong-password", "missing-database"])
def test_a_refused_login_or_missing_database_fails_at_once_with_its_own_message(
        settings, backup_env, pg_cluster, connection_attempts, url_of, error, message):
    with pytest.raises(error, match=re.escape(message)) as raised:
        backup_database(database_url_block=url_in_block(url_of(pg_cluster.port)))
    assert "(not retried)" in str(raised.value) and "wrong-password" not in str(raised.value)
    assert len([a for a in connection_attempts if "/no_such_db " in a or a.endswith(" wrong-password")]) == 1
    [row] = catalog(settings).values()  # runbooks/backup-and-restore.md's first step finds the reason
    assert row.status == "failed" and row.failure_reason == f"{error.__name__}: {raised.value}"


def test_the_run_records_the_name_of_the_url_block_never_the_url(settings, backup_env):
    """What the UI's Parameters tab and `prefect flow-run inspect` show."""
    from prefect import get_client

    result = backup_database(database_url_block=url_in_block(settings.database_url))
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs() if r.parameters.get("database_url_block")]
    assert runs and result["backup_id"]
    for run in runs:
        assert run.parameters == {"storage": None, "database_url_block": "backup-target-url"}


def test_a_bad_parameter_fails_the_run_before_any_work_naming_it(settings, backup_env):
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match=r"storage[\s\S]*'local' or 's3'"):
        backup_database(storage="S3")
    assert catalog(settings) == {} and not backup_env.exists()


def test_pg_dump_older_than_the_server_is_refused_with_a_clear_message(settings, backup_env, tmp_path, settings_env):
    fake = tmp_path / "old-pg" / "pg_dump"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.4'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    settings_env({"PG_BIN_DIR": str(fake.parent)})
    with pytest.raises(PgDumpTooOld, match=r"pg_dump 12.4 .* older than the server \(15"):
        backup_database()
    [row] = catalog(settings).values()  # the runbook's first step: failure_reason says why
    assert row.status == "failed" and row.failure_reason.startswith("PgDumpTooOld: pg_dump 12.4")


@pytest.fixture
def moto_s3(settings_env):
    server = MotoServer(free_port()).start()
    settings_env({
        "BACKUP_STORAGE": "s3",
        "BACKUP_S3_BUCKET": "textbook-backups",
        "AWS_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    })
    client = boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="textbook-backups")
    yield client
    server.stop()


def test_s3_upload_that_fails_once_is_retried_and_leaves_exactly_one_object(settings, backup_env, moto_s3, monkeypatch):
    real_write = storage_module.S3BackupStorage.write_stream
    calls = {"n": 0}

    def fail_first(self, name, stream):
        calls["n"] += 1
        if calls["n"] == 1:
            stream.read(4096)
            raise ConnectionResetError("S3 connection reset")
        return real_write(self, name, stream)

    monkeypatch.setattr(storage_module.S3BackupStorage, "write_stream", fail_first)
    result = backup_database()
    keys = sorted(o["Key"] for o in moto_s3.list_objects_v2(Bucket="textbook-backups").get("Contents", []))
    prefix = "textbook-ops/backups/"
    assert keys == [f"{prefix}{result['backup_id']}.dump", f"{prefix}{result['backup_id']}.manifest.json"]
    assert result["location"] == f"s3://textbook-backups/{prefix}{result['backup_id']}.dump"
    assert calls["n"] == 3  # the failed dump upload, its retry, the manifest
    drill = restore_drill()
    assert catalog(settings)[drill["backup_id"]].status == "verified"


def test_retention_keeps_the_last_verified_backup_when_the_newest_failed(settings, backup_env, monkeypatch,
                                                                          settings_env):
    verified = backup_database()
    restore_drill()
    unverified = backup_database()
    monkeypatch.setattr(storage_module.LocalBackupStorage, "write_stream",
                        lambda self, name, stream: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        backup_database()
    monkeypatch.undo()
    settings_env({"BACKUP_KEEP_DAILY": "1", "BACKUP_KEEP_WEEKLY": "0", "BACKUP_KEEP_MONTHLY": "0"})
    from tasks.concurrency import exclusive

    with exclusive("backup-catalog"):
        pruned, _ = apply_retention(get_settings(), now=datetime.now(UTC) + timedelta(days=10))
    rows = catalog(settings)
    assert list(pruned) == [unverified["backup_id"]] and rows[unverified["backup_id"]].status == "pruned"
    assert pruned[unverified["backup_id"]] == (f"{verified['backup_id']} is the backup kept for "
                                               f"{rows[unverified['backup_id']].finished_at:%Y-%m-%d} (newest verified)")
    assert rows[verified["backup_id"]].status == "verified"
    assert sorted(r.status for r in rows.values()) == ["failed", "pruned", "verified"]
    assert sorted(p.name for p in backup_env.iterdir() if p.is_file()) == [
        f"{verified['backup_id']}.dump", f"{verified['backup_id']}.manifest.json"]


def test_backup_files_do_not_leak_credentials(settings, backup_env):
    result = backup_database()
    manifest = (backup_env / f"{result['backup_id']}.manifest.json").read_text()
    assert "test-app-password" not in manifest and os.environ["DATABASE_URL"] not in manifest
    assert Path(result["location"]).exists()


def test_restore_database_into_a_new_target_then_replace_it_only_with_confirmation(settings, backup_env, pg_cluster):
    from flows.restore_database import restore_database
    from tasks.databases import RefusingToOverwrite

    backup = backup_database()
    restore_drill()
    first = restore_database(target="textbook_recovered")
    assert first["previous"] is None
    with psycopg.connect(pg_cluster.superuser_dsn("textbook_recovered")) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'chat_session'").fetchone()[0]
        restored_sessions = conn.execute("SELECT count(*) FROM chat_session").fetchone()[0]
    assert owner == "textbook_app"
    assert restored_sessions == catalog(settings)[backup["backup_id"]].manifest["row_counts"]["public.chat_session"]

    with pytest.raises(RefusingToOverwrite, match="not empty and no confirm was given: replacing it needs "
                                                  "confirm='textbook_recovered'"):
        restore_database(target="textbook_recovered")
    with pytest.raises(RefusingToOverwrite, match="not empty and confirm='textbook' was given: replacing it needs "
                                                  "confirm='textbook_recovered'"):
        restore_database(target="textbook_recovered", confirm="textbook")
    second = restore_database(target="textbook_recovered", confirm="textbook_recovered")
    assert second["previous"].startswith("textbook_recovered__before_")
    with psycopg.connect(pg_cluster.superuser_dsn()) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'textbook_recovered%'")}
    assert names == {"textbook_recovered", second["previous"]}
    for name in names:
        pg_cluster.drop_database(name)


def test_failed_restore_leaves_the_target_untouched(settings, backup_env, pg_cluster):
    from flows.restore_database import restore_database

    backup = backup_database()
    restore_database(target="textbook_untouched", backup_id=backup["backup_id"])
    dump = backup_env / f"{backup['backup_id']}.dump"
    dump.write_bytes(dump.read_bytes()[:-100])  # truncated
    with pytest.raises(ChecksumMismatch, match="checksum mismatch"):
        restore_database(target="textbook_untouched", backup_id=backup["backup_id"], confirm="textbook_untouched")
    with psycopg.connect(pg_cluster.superuser_dsn()) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'textbook_untouched%'")}
    assert names == {"textbook_untouched"}
    pg_cluster.drop_database("textbook_untouched")


def test_two_backups_never_overlap(settings, backup_env):
    import threading

    results, errors = [], []

    def run():
        try:
            results.append(backup_database())
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == [] and len(results) == 2
    first, second = sorted(catalog(settings).values(), key=lambda r: r.started_at)
    assert first.finished_at <= second.started_at, "the second backup started before the first one finished"


@pytest.fixture
def fake_pushgateway():
    """Records pushes (POST /metrics/job/<job>, push-add, text exposition format); answers /-/healthy."""
    with pushgateway_recorder() as recorded:
        yield recorded


@pytest.mark.parametrize("variable", ["PUSHGATEWAY_URL", "LOCAL_PUSHGATEWAY_URL"])
def test_drill_pushes_its_metrics_to_a_pushgateway(settings, backup_env, settings_env, fake_pushgateway, variable):
    """PUSHGATEWAY_URL, or (what `make up` gives its worker) the local Pushgateway when it answers."""
    url, pushes = fake_pushgateway
    settings_env({variable: url})
    backup_database()
    restore_drill()
    jobs = {path: body for path, body in pushes}
    assert "backup_last_success_timestamp_seconds" in jobs["/metrics/job/backup_database"]
    drill = jobs["/metrics/job/restore_drill"]
    for name in ("restore_drill_success 1.0", "restore_drill_duration_seconds", "backup_last_verified_timestamp_seconds"):
        assert name in drill


def test_a_local_pushgateway_that_does_not_answer_is_skipped(settings, backup_env, settings_env):
    """`make up` without `make monitoring-up`: runs succeed and push nothing."""
    settings_env({"LOCAL_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}"})
    backup_database()
    assert restore_drill()["verified"]


def test_retention_keeps_a_backup_a_restore_just_used_and_says_why_others_went(settings, backup_env, pg_cluster,
                                                                               settings_env):
    """The issue's day: backups and drills, a restore from the first backup, more backups; keeping one a day
    must not prune the backup the restore used."""
    from flows.restore_database import restore_database

    settings_env({"BACKUP_KEEP_DAILY": "1", "BACKUP_KEEP_WEEKLY": "0", "BACKUP_KEEP_MONTHLY": "0"})
    used = backup_database()
    restore_drill()
    restore_database(target="textbook_retention", backup_id=used["backup_id"])
    pg_cluster.drop_database("textbook_retention")
    newer = backup_database()
    restore_drill()
    third = backup_database()
    fourth = backup_database()
    rows = catalog(settings)
    assert rows[used["backup_id"]].status == "verified" and rows[used["backup_id"]].last_restored_at is not None
    assert rows[newer["backup_id"]].status == "verified"  # the newest verified
    assert fourth["pruned"] == [third["backup_id"]] and rows[third["backup_id"]].status == "pruned"
    shown = {r["backup_id"]: r for r in json.loads(Artifact.get("backup-catalog").data)}
    assert shown[third["backup_id"]]["why"] == (
        f"{fourth['backup_id']} is the backup kept for {rows[third['backup_id']].finished_at:%Y-%m-%d} (daily)")
