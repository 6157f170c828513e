"""Tasks on Postgres databases: connections (and whether a failure is worth a retry), dumps, restores and scratch
databases. The flows' bookkeeping rows are in tasks/run_records.py."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from psycopg import sql
from sqlalchemy.engine import make_url

from app.core.db import create_db_engine, session_scope
from app.ops.backups import HashingReader, schema_fingerprint
from app.ops.pg_binaries import binary_version, find_pg_binary, major_version
from app.settings import Settings


class DatabaseUnreachable(RuntimeError):
    """Postgres did not answer (refused, timed out, starting up): worth retrying."""


class DatabaseRejected(RuntimeError):
    """Postgres answered and said no; retrying cannot help."""


class DatabaseLoginRejected(DatabaseRejected):
    """Wrong user or password, or no pg_hba.conf entry / CONNECT privilege for this login."""


class DatabaseNotFound(DatabaseRejected):
    """The database named in the URL does not exist on the server."""


# libpq reports connection failures without a SQLSTATE; the server's FATAL text is what tells them apart.
_REJECTIONS: tuple[tuple[re.Pattern[str], type[DatabaseRejected], str], ...] = (
    (re.compile(r'database "[^"]*" does not exist'), DatabaseNotFound,
     "check the database name in the URL (DATABASE_URL / MAINTENANCE_DATABASE_URL)"),
    (re.compile(r'password authentication failed|role "[^"]*" does not exist|no pg_hba\.conf entry|'
                r'permission denied for database|authentication failed'), DatabaseLoginRejected,
     "check the user and password (DATABASE_URL / MAINTENANCE_DATABASE_URL, or the rotated credentials' secret)"),
)


def rejection_for(exc: BaseException, url: str | None = None) -> DatabaseRejected | None:
    """The permanent error behind a failed connection (psycopg's, or SQLAlchemy's wrapping it), or None."""
    if isinstance(exc, DatabaseRejected):
        return exc
    original = getattr(exc, "orig", None) or exc
    if not isinstance(original, psycopg.OperationalError):
        return None
    text = str(original).strip()
    for pattern, kind, advice in _REJECTIONS:
        for line in text.splitlines():
            if pattern.search(line):
                where = database_identity(url) if url else None
                at = f" at {where['host']}:{where['port']} as {where['user']}" if where else ""
                said = line.split("FATAL:", 1)[-1].strip()
                return kind(f"Postgres{at} refused the connection: {said}; {advice} (not retried)")
    return None


def retry_unless_rejected(task: Any, task_run: Any, state: Any) -> bool:
    """retry_condition_fn for database tasks: connection errors retry, a refused login or missing database does not."""
    outcome = state.result(raise_on_failure=False)
    return not isinstance(outcome, BaseException) or rejection_for(outcome) is None


_engines: dict[str, Any] = {}


def engine_for(settings: Settings) -> Any:
    """One small SQLAlchemy engine per database URL and process, shared by the flows' bookkeeping tasks."""
    url = settings.resolved_database_url
    if url not in _engines:
        _engines[url] = create_db_engine(settings.model_copy(update={"db_pool_size": 1}))
    return _engines[url]


def insert_row(settings: Settings, row: Any) -> int:
    """Insert one bookkeeping row (a SQLModel table row) in its own transaction; returns its id."""
    with session_scope(engine_for(settings)) as db:
        db.add(row)
        db.flush()
        assert row.id is not None
        return row.id


class PgDumpTooOld(RuntimeError):
    """pg_dump is older than the server: its dumps could miss what the server has."""


@dataclass(frozen=True)
class DatabaseFacts:
    row_counts: dict[str, int]
    tables_with_primary_key: list[str]
    schema_fingerprint: str


@dataclass(frozen=True)
class DumpResult:
    sha256: str
    bytes: int
    facts: DatabaseFacts
    server_version: str
    pg_dump_version: str
    seconds: float


def libpq(url: str, dbname: str | None = None) -> tuple[str, dict[str, str]]:
    """A libpq URL without its password, and the environment carrying the password (not on a command line)."""
    parsed = make_url(url)
    if dbname:
        parsed = parsed.set(database=dbname)
    env = {"PGPASSWORD": parsed.password or "", "PGCONNECT_TIMEOUT": "5"}
    safe = parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return safe, env


def database_identity(url: str) -> dict[str, object]:
    parsed = make_url(url)
    return {"host": parsed.host, "port": parsed.port or 5432, "dbname": parsed.database, "user": parsed.username}


def connect(url: str, dbname: str | None = None, **kwargs: object) -> psycopg.Connection:
    conninfo, env = libpq(url, dbname)
    try:
        return psycopg.connect(conninfo, password=env["PGPASSWORD"], connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        if rejected := rejection_for(exc, url):
            raise rejected from None
        where = database_identity(url)
        raise DatabaseUnreachable(
            f"cannot connect to Postgres at {where['host']}:{where['port']} as {where['user']}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__}"
        ) from None


TABLES_SQL = """
SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1
"""
PRIMARY_KEYS_SQL = """
SELECT n.nspname || '.' || c.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE k.contype = 'p' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
"""
COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
"""


def read_database_facts(conn: psycopg.Connection) -> DatabaseFacts:
    """Exact row counts, primary keys and the schema fingerprint, in the connection's snapshot."""
    tables = [row[0] for row in conn.execute(TABLES_SQL).fetchall()]
    counts = {}
    for table in tables:
        schema, name = table.split(".", 1)
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        counts[table] = conn.execute(query).fetchone()[0]
    primary_keys = [row[0] for row in conn.execute(PRIMARY_KEYS_SQL).fetchall()]
    fingerprint = schema_fingerprint(tuple(row) for row in conn.execute(COLUMNS_SQL).fetchall())
    return DatabaseFacts(row_counts=counts, tables_with_primary_key=primary_keys, schema_fingerprint=fingerprint)


@task(name="check-pg-dump-version", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=10,
      retry_condition_fn=retry_unless_rejected)
def check_pg_dump_version(settings: Settings, database_url: str) -> tuple[str, str]:
    """pg_dump must not be older than the server (it cannot dump what it does not know); the server's own
    major's when installed."""
    with connect(database_url) as conn:
        server_version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    pg_dump = find_pg_binary("pg_dump", settings.pg_bin_dir, server_major=major_version(server_version))
    dump_version = binary_version(pg_dump)
    if major_version(dump_version) < major_version(server_version):
        raise PgDumpTooOld(
            f"pg_dump {dump_version} ({pg_dump}) is older than the server ({server_version}): install the PostgreSQL "
            f"{major_version(server_version)} client (Debian: postgresql-client-{major_version(server_version)}) "
            "or point PG_BIN_DIR at it"
        )
    return server_version, dump_version


@task(name="dump-database", cache_policy=NO_CACHE, timeout_seconds=6 * 3600)
def dump_database(settings: Settings, database_url: str, storage: Any, temp_name: str,
                  versions: tuple[str, str]) -> DumpResult:
    """pg_dump -Fc in an exported snapshot, streamed to storage with its sha256 computed on the way;
    exact row counts and the schema fingerprint are read in the same snapshot, while the dump runs."""
    logger = get_run_logger()
    started = time.perf_counter()
    conninfo, env = libpq(database_url)
    with connect(database_url, autocommit=True) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        facts: dict[str, DatabaseFacts] = {}
        errors: list[BaseException] = []

        def read_facts() -> None:
            try:
                facts["value"] = read_database_facts(conn)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, in the task's thread
                errors.append(exc)

        pg_dump = find_pg_binary("pg_dump", settings.pg_bin_dir, server_major=major_version(versions[0]))
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(
                [pg_dump, "--format=custom", f"--snapshot={snapshot}", "--no-password", f"--dbname={conninfo}"],
                stdout=subprocess.PIPE, stderr=stderr, env={**_base_env(), **env},
            )
            _widen_pipe(process.stdout)
            counter = threading.Thread(target=read_facts, name="row-counts")
            counter.start()
            reader = HashingReader(process.stdout)  # type: ignore[arg-type]
            try:
                storage.write_stream(temp_name, reader)
            except BaseException:
                process.kill()
                raise
            finally:
                code = process.wait()
                counter.join()
            if code != 0:
                stderr.seek(0)
                raise RuntimeError(f"pg_dump failed ({code}): {stderr.read().decode(errors='replace').strip()[-2000:]}")
        conn.execute("COMMIT")
    if errors:
        raise errors[0]
    seconds = time.perf_counter() - started
    logger.info("dumped %s: %d bytes in %.1f s (%.0f MB/s), sha256 %s", database_identity(database_url)["dbname"],
                reader.bytes, seconds, reader.bytes / 1e6 / max(seconds, 1e-9), reader.sha256)
    return DumpResult(sha256=reader.sha256, bytes=reader.bytes, facts=facts["value"], server_version=versions[0],
                      pg_dump_version=versions[1], seconds=seconds)


def _widen_pipe(stream: Any) -> None:
    """A 1 MiB pipe (Linux) instead of 64 KiB: pg_dump stalls less while we hash and store."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), 1031, 1 << 20)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "TZ")}


@task(name="create-database", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)
def create_database(settings: Settings, name: str, owner: str | None = None) -> None:
    with connect(settings.resolved_maintenance_database_url, autocommit=True) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            statement = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
        conn.execute(statement)


@task(name="drop-database", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)
def drop_database(settings: Settings, name: str) -> None:
    """Idempotent: dropping a database that is not there is fine."""
    with connect(settings.resolved_maintenance_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def database_exists(settings: Settings, name: str) -> bool:
    with connect(settings.resolved_maintenance_database_url) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@task(name="restore-dump", cache_policy=NO_CACHE, timeout_seconds=6 * 3600)
def restore_dump(settings: Settings, dump_path: Path, dbname: str, *, jobs: int, role: str | None = None) -> float:
    """pg_restore -j into an existing empty database; objects owned by the connecting role (or `role`).

    The target server's own major's pg_restore when installed (a newer one may send settings it rejects).
    Always without the source's owners and privileges (`--no-owner --no-privileges`): a target's roles are its
    own (Neon names them per project; a restore into another cluster has none of the source's roles), and the
    target's owner role, not a copy of the source's grants, decides who may read the restored data."""
    started = time.perf_counter()
    with connect(settings.resolved_maintenance_database_url) as conn:
        server_major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
    conninfo, env = libpq(settings.resolved_maintenance_database_url, dbname)
    pg_restore = find_pg_binary("pg_restore", settings.pg_bin_dir, server_major=server_major)
    args = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error",
            f"--jobs={jobs}", "--no-password", f"--dbname={conninfo}", str(dump_path)]
    if role:
        args.insert(-1, f"--role={role}")
    result = subprocess.run(args, capture_output=True, text=True, env={**_base_env(), **env})
    if result.returncode != 0:
        raise RuntimeError(f"pg_restore failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return time.perf_counter() - started


@task(name="inspect-database", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_unless_rejected)
def inspect_database(settings: Settings, dbname: str) -> DatabaseFacts:
    with connect(settings.resolved_maintenance_database_url, dbname) as conn:
        return read_database_facts(conn)


class RefusingToOverwrite(RuntimeError):
    """The restore target holds data and the operator did not confirm replacing it."""


def database_has_tables(settings: Settings, name: str) -> bool:
    with connect(settings.resolved_maintenance_database_url, name) as conn:
        return bool(conn.execute(TABLES_SQL).fetchall())


@task(name="switch-databases", cache_policy=NO_CACHE)
def switch_databases(settings: Settings, *, staging: str, target: str, keep_previous_as: str | None) -> None:
    """Rename target -> keep_previous_as (if it exists), then staging -> target, closing connections first."""
    with connect(settings.resolved_maintenance_database_url, autocommit=True) as conn:
        def rename(old: str, new: str) -> None:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                         "AND pid <> pg_backend_pid()", (old,))
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new)))

        if keep_previous_as:
            rename(target, keep_previous_as)
        rename(staging, target)
