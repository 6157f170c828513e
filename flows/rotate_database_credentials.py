"""rotate-db-credentials: give the service a new database password without downtime (alternating users).

When it runs: every 30 days (prefect.yaml), or on demand after a suspected leak.
What it does, in order: read which login role is current -> make sure both login roles exist as members of the
application role -> audit `started` -> stage {username, password} for the other role as the pending version ->
set that role's password in Postgres -> log in with it and read an application table -> promote it to current ->
audit `completed`. Running services re-read the secret every SECRET_REFRESH_S, or at once when a new connection
is refused; their open connections keep working, and the role they used keeps its password until the next
rotation. If anything fails after the password was set, the role gets its previous password back (from the
store's previous version), the pending version is discarded and the run fails with the reason.

Runbook: runbooks/secret-rotation.md.
"""

from __future__ import annotations

import secrets
import sys

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from app.core.secret_source import DatabaseCredentials, database_credentials_secret_name
from app.settings import Settings, get_settings
from flows.cli import flow_parser, run_cli
from tasks.postgres_roles import ensure_rotation_roles, next_user, set_role_password, verify_database_login
from tasks.run_records import audited_rotation
from tasks.secrets import (
    SecretStore,
    SecretStoreError,
    discard_pending_secret,
    promote_secret,
    secret_store_for,
    stage_secret,
)


@task(name="read-current-database-user", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def read_current_user(store: SecretStore, name: str) -> tuple[str | None, str | None]:
    """(version id, username) of the current credential; (None, None) before the first rotation."""
    try:
        current = store.current(name)
    except SecretStoreError as exc:
        if "does not exist" in str(exc) or "ResourceNotFound" in str(exc):
            return None, None
        raise
    return current.version_id, DatabaseCredentials.parse(current.value.get_secret_value(), name=name).username


@task(name="restore-previous-password", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2)
def restore_previous_password(settings: Settings, store: SecretStore, name: str, user: str, new_version: str) -> str:
    """Undo `set-role-password` unless the new version did become current. Returns what was done."""
    try:
        if store.current(name).version_id == new_version:
            return "kept: the new credential is already current"
    except SecretStoreError:
        pass
    try:
        previous = DatabaseCredentials.parse(store.previous(name).value.get_secret_value(), name=name)
    except SecretStoreError:
        previous = None
    if previous is not None and previous.username == user:
        set_role_password.fn(settings, user, SecretStr(previous.password))
        return f"restored the previous password of {user}"
    set_role_password.fn(settings, user, None)  # nobody had a valid password for it: keep it unusable
    return f"removed the new password of {user} (it had no previous one)"


@flow(name="rotate-db-credentials", log_prints=True)
def rotate_database_credentials() -> dict:
    """Rotate the service's database credential to the other of the two alternating login roles."""
    logger = get_run_logger()
    settings = get_settings()
    store = secret_store_for(settings)
    name = database_credentials_secret_name(settings)

    old_version, old_user = read_current_user(store, name)
    ensure_rotation_roles(settings)
    user = next_user(settings, old_user)
    password = SecretStr(secrets.token_urlsafe(32))
    with audited_rotation(settings, secret_name=name, backend=store.backend, old_version_id=old_version) as rotation:
        try:
            rotation.new_version_id = stage_secret(
                store, name, SecretStr(DatabaseCredentials(user, password.get_secret_value()).dumps()))
            set_role_password(settings, user, password)
            rotation.failure_status = "rolled_back"  # from here on, a failure restores the role's previous password
            verify_database_login(settings, user, password)
            promote_secret(store, name, rotation.new_version_id)
        except Exception as exc:
            rotation.undone = (restore_previous_password(settings, store, name, user, rotation.new_version_id)
                               if rotation.failure_status == "rolled_back"
                               else "nothing to undo: the password was not changed")
            discard_pending_secret(store, name)
            logger.error("rotation of %s failed: %s; %s", name, exc, rotation.undone)
            raise
        rotation.outcome = f"completed: {old_user or 'the URL user'} -> {user}"
    new_version = rotation.new_version_id
    logger.info("rotated %s: %s is current (version %s); %s keeps its password until the next rotation",
                name, user, new_version, old_user or "the URL user")
    return {"secret": name, "user": user, "previous_user": old_user, "old_version_id": old_version,
            "new_version_id": new_version}


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.rotate_database_credentials", __doc__)
    parser.parse_args(argv)
    result = rotate_database_credentials()
    print(f"{result['secret']}: {result['user']} is current (version {result['new_version_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
