"""Engine, sessions and the migration entry point. The only place that builds a database engine."""

from __future__ import annotations

import logging
import select
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import InvalidatePoolError
from sqlmodel import Session, create_engine

from app.core.secret_source import DatabaseCredentials, RefreshingSecret, SecretSourceError
from app.settings import PROJECT_ROOT, Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def create_db_engine(settings: Settings, credentials: RefreshingSecret | None = None) -> Engine:
    """The engine; with `credentials`, every new connection logs in with the secret store's current user."""
    engine = create_engine(
        settings.resolved_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout_s,
        connect_args={"connect_timeout": settings.db_connect_timeout_s, "application_name": "textbook-ops"},
    )
    event.listen(engine.pool, "checkout", _refuse_a_closed_connection)
    if credentials is not None:
        _log_in_with_rotated_credentials(engine, credentials)
    return engine


def _refuse_a_closed_connection(dbapi_connection: psycopg.Connection, *_: object) -> None:
    """A pooled connection whose server went away (a restart, a failover) is replaced before it is used.

    Instead of `pool_pre_ping` (a SELECT 1 round trip on every checkout, a Postgres query per request), look at the
    idle connection's socket: the server closing it (or saying it is terminating) makes it readable. Raising here
    makes the pool reconnect this record and invalidate every connection older than it, as a failed pre-ping does.
    A server that vanishes without closing its sockets fails the next query instead (503, and the pool is invalidated
    then)."""
    if dbapi_connection.closed:
        raise InvalidatePoolError("the pooled connection is closed")
    try:
        poller = select.poll()  # not select.select: a descriptor above FD_SETSIZE is fine
        poller.register(dbapi_connection.fileno(), select.POLLIN)
        readable = bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        readable = True
    if readable:
        raise InvalidatePoolError("the server closed the pooled connection (or sent an unsolicited message)")


def _log_in_with_rotated_credentials(engine: Engine, credentials: RefreshingSecret) -> None:
    """Open connections keep working after a rotation; a new one that is refused re-reads the secret once."""

    def apply(cparams: dict, raw: str | None) -> DatabaseCredentials | None:
        if raw is None:
            return None  # not rotated yet: the URL's user
        parsed = DatabaseCredentials.parse(raw, name=credentials.name)
        cparams["user"], cparams["password"] = parsed.username, parsed.password
        return parsed

    @event.listens_for(engine, "do_connect")
    def connect(dialect, connection_record, cargs, cparams):
        try:
            used = apply(cparams, credentials.get())
        except SecretSourceError as exc:  # reported like any database outage: 503 with Retry-After
            raise psycopg.OperationalError(f"database credentials unavailable: {exc}") from None
        try:
            return dialect.connect(*cargs, **cparams)
        except psycopg.OperationalError as exc:
            if "authentication failed" not in str(exc):
                raise
            if apply(cparams, credentials.refresh()) == used:
                raise
            log.info("database login refused; retrying with the secret store's new credentials")
            return dialect.connect(*cargs, **cparams)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def alembic_config(database_url: str) -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)

