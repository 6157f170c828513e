"""Backups across PostgreSQL majors: a newer server than Debian 12's client (15), as Neon runs (14-17).

The newer server is PostgreSQL 16 from the `pgserver` wheel (its own initdb/postgres/pg_dump/pg_restore, run as the
`postgres` user like the embedded cluster). The newest major this machine can run is 16: Debian 12 has no
postgresql-17 package, and no PyPI wheel here carries a PostgreSQL 17 server.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import psycopg
import pytest
from sqlmodel import Session, select

from app.db import create_db_engine
from app.models import BackupCatalog
from app.pg_binaries import binary_version, find_pg_binary, major_version
from app.settings import get_settings
from devenv.postgres import PostgresCluster
from flows.backup_database import backup_database
from flows.restore_drill import restore_drill
from tasks.postgres import PgDumpTooOld
from tests.conftest import free_port

pytestmark = pytest.mark.usefixtures("prefect_harness")

PG16_BIN = Path(importlib.util.find_spec("pgserver").submodule_search_locations[0]) / "pginstall" / "bin"
NEON_LIKE_PASSWORD = "neon-like-password"


@pytest.fixture(scope="module")
def newer_server(tmp_path_factory):
    """A PostgreSQL 16 cluster holding a database owned by a role that exists only there (as on Neon)."""
    cluster = PostgresCluster(root=tmp_path_factory.mktemp("pg16") / "cluster", port=free_port(), fast_unsafe=True,
                              bin_dir=PG16_BIN)
    cluster.initialize()
    cluster.start()
    try:
        cluster.ensure_database(dbname="neondb", app_user="neondb_owner", app_password=NEON_LIKE_PASSWORD)
        with psycopg.connect(cluster.superuser_dsn("neondb"), autocommit=True) as conn:
            conn.execute("SET ROLE neondb_owner")
            conn.execute("CREATE TABLE lesson (id serial PRIMARY KEY, title text NOT NULL)")
            conn.execute("INSERT INTO lesson (title) SELECT 'lesson ' || n FROM generate_series(1, 25) AS n")
        yield cluster
    finally:
        cluster.stop()
        if cluster.server_root != cluster.root:  # under pytest's 0700 folder: moved to the postgres user's home
            shutil.rmtree(cluster.server_root, ignore_errors=True)


def url_block(cluster: PostgresCluster) -> str:
    from prefect.blocks.system import Secret

    url = f"postgresql+psycopg://neondb_owner:{NEON_LIKE_PASSWORD}@127.0.0.1:{cluster.port}/neondb"
    Secret(value=url).save("neon-like-database-url", overwrite=True)
    return "neon-like-database-url"


@pytest.fixture
def backup_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("TASK_RETRY_DELAY_S", "0")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_machines_server_and_client_and_the_newer_server_are_the_majors_this_test_is_about(newer_server):
    assert major_version(binary_version(find_pg_binary("pg_dump"))) == 15
    assert major_version(binary_version(str(PG16_BIN / "pg_dump"))) == 16
    with psycopg.connect(newer_server.superuser_dsn()) as conn:
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("16")


def test_debians_15_client_refuses_to_back_up_a_16_server(settings, newer_server, backup_dir):
    with pytest.raises(PgDumpTooOld, match=r"pg_dump 15\.\S+ .* older than the server \(16\.2\).*postgresql-client-16"):
        backup_database(database_url_block=url_block(newer_server))


def test_a_16_client_backs_up_the_16_server_and_the_drill_restores_it_without_its_owner(
        settings, newer_server, backup_dir, monkeypatch):
    """The drill restores into the newer server too, connected as another role than the dump's owner: owners and
    grants of the dump are not replayed (`pg_restore --no-owner --no-acl`), as a restore into Neon needs."""
    monkeypatch.setenv("PG_BIN_DIR", str(PG16_BIN))
    monkeypatch.setenv("MAINTENANCE_DATABASE_URL", f"postgresql+psycopg://postgres:{newer_server.superuser_password()}"
                                                   f"@127.0.0.1:{newer_server.port}/postgres")
    get_settings.cache_clear()
    result = backup_database(database_url_block=url_block(newer_server))
    drill = restore_drill(backup_id=result["backup_id"])
    engine = create_db_engine(settings)
    with Session(engine) as db:
        row = db.exec(select(BackupCatalog).where(BackupCatalog.backup_id == result["backup_id"])).one()
    engine.dispose()
    assert drill["verified"] and row.status == "verified"
    assert row.server_version.startswith("16.") and row.pg_dump_version.startswith("16.")
    assert row.manifest["row_counts"] == {"public.lesson": 25}
