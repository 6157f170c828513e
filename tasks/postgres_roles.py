"""Login roles for credential rotation with alternating users (as AWS's RDS rotation does it).

Two login roles, `<app role>_a` and `<app role>_b`, are members of the application role that owns the tables,
and start every session as it (`ALTER ROLE ... SET role`), so objects they create belong to the application
role too. A rotation resets the password of the one not in use; the other keeps working meanwhile.
All statements run as the maintenance role (MAINTENANCE_DATABASE_URL: CREATEROLE, admin of the app role).
"""

from __future__ import annotations

import psycopg
from prefect import task
from prefect.cache_policies import NO_CACHE
from psycopg import sql
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from app.settings import Settings
from tasks.databases import connect, libpq
from tasks.secrets import CredentialRejected, unless_rejected


def application_role(settings: Settings) -> str:
    """The role that owns the tables: the user in DATABASE_URL (or the embedded default)."""
    return str(make_url(settings.resolved_database_url).username)


def alternating_users(settings: Settings) -> tuple[str, str]:
    role = application_role(settings)
    return f"{role}_a", f"{role}_b"


def next_user(settings: Settings, current_user: str | None) -> str:
    first, second = alternating_users(settings)
    return second if current_user == first else first


@task(name="ensure-rotation-roles", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def ensure_rotation_roles(settings: Settings) -> tuple[str, str]:
    """Create the two login roles when missing (without a password: they cannot log in until rotated)."""
    role = application_role(settings)
    users = alternating_users(settings)
    with connect(settings.resolved_maintenance_database_url, autocommit=True) as conn:
        for user in users:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT").format(
                    sql.Identifier(user)))
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(user)))
            conn.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(sql.Identifier(user), sql.Literal(role)))
    return users


@task(name="set-role-password", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def set_role_password(settings: Settings, user: str, password: SecretStr | None) -> None:
    """Set (or, with None, remove) a login role's password. The statement is never logged with its value."""
    if user not in alternating_users(settings):
        raise ValueError(f"{user!r} is not one of the rotation users {alternating_users(settings)}")
    with connect(settings.resolved_maintenance_database_url, autocommit=True) as conn:
        if password is None:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(user)))
        else:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(user), sql.Literal(password.get_secret_value())))


@task(name="verify-database-login", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1,
      retry_condition_fn=unless_rejected)
def verify_database_login(settings: Settings, user: str, password: SecretStr) -> str:
    """Log in as `user` and read an application table, as the service will. Returns the effective role."""
    conninfo, _ = libpq(settings.resolved_database_url)
    try:
        with psycopg.connect(conninfo, user=user, password=password.get_secret_value(),
                             connect_timeout=settings.db_connect_timeout_s) as conn:
            effective, = conn.execute("SELECT current_user").fetchone()
            conn.execute("SELECT count(*) FROM (SELECT 1 FROM query_log LIMIT 1) AS probe").fetchone()
    except psycopg.OperationalError as exc:
        raise CredentialRejected(f"the database refused the new credential of {user}: "
                                 f"{str(exc).splitlines()[-1][:200]}") from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise CredentialRejected(f"{user} logs in but cannot read the application's tables: {exc}") from None
    if effective != application_role(settings):
        raise CredentialRejected(f"{user} acts as {effective}, not as {application_role(settings)}")
    return effective
