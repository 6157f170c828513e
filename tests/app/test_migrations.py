"""Alembic owns the schema: migrations go up and down cleanly and match the SQLModel models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

import app.core.models  # noqa: F401
from app.core.db import downgrade, migrate
from tests.conftest import APP_PASSWORD, database_url

TABLES = {"chat_session", "message", "query_log", "feedback", "api_key", "ingest_run"}


def test_upgrade_downgrade_upgrade_and_no_drift(pg_cluster):
    pg_cluster.drop_database("migrations_check")
    pg_cluster.ensure_database(dbname="migrations_check", app_user="textbook_app", app_password=APP_PASSWORD)
    url = database_url(pg_cluster, "migrations_check")
    engine = create_engine(url)
    try:
        migrate(url)
        assert TABLES <= set(inspect(engine).get_table_names())
        downgrade(url, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate(url)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
        assert diff == [], f"models and migrations drift: {diff}"
    finally:
        engine.dispose()
        pg_cluster.drop_database("migrations_check")


def test_application_role_is_not_a_superuser(pg_cluster, settings):
    import psycopg

    with psycopg.connect(pg_cluster.superuser_dsn()) as conn:
        superuser, = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'textbook_app'").fetchone()
    assert superuser is False


def test_migration_history_has_exactly_one_head():
    from alembic.script import ScriptDirectory

    from app.core.db import alembic_config

    script = ScriptDirectory.from_config(alembic_config("postgresql+psycopg://unused@127.0.0.1/unused"))
    assert script.get_heads() == [script.get_current_head()], (
        f"migrations have several heads {script.get_heads()}: new revisions revise the newest one")
