"""Database credential rotation with alternating users, against the session's real Postgres and Prefect."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, select

from app.core.db import create_db_engine
from app.core.models import SecretRotation
from app.core.secret_source import DatabaseCredentials, SecretSourceError, database_credentials_secret_name
from app.main import create_app
from flows.rotate_database_credentials import rotate_database_credentials
from tasks.postgres_roles import CredentialRejected, alternating_users
from tasks.secrets import PrefectSecretStore, SecretStoreError, secret_store_for
from tests.conftest import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def prefix(settings, settings_env):
    """Each test rotates its own secret (the login roles are shared by the session's database)."""
    yield settings_env({"SECRET_NAME_PREFIX": f"dbrot{free_port()}"})


def current_credentials(settings) -> DatabaseCredentials:
    name = database_credentials_secret_name(settings)
    return DatabaseCredentials.parse(secret_store_for(settings).current(name).value.get_secret_value(), name=name)


def can_log_in(pg_cluster, user: str, password: str) -> bool:
    try:
        with psycopg.connect(host="127.0.0.1", port=pg_cluster.port, dbname="textbook", user=user, password=password,
                             connect_timeout=3) as conn:
            return conn.execute("SELECT count(*) >= 0 FROM query_log").fetchone()[0]
    except psycopg.OperationalError:
        return False


def audit_statuses(settings, name: str) -> list[str]:
    engine = create_db_engine(settings)
    with Session(engine) as db:
        rows = db.exec(select(SecretRotation).where(SecretRotation.secret_name == name).order_by(SecretRotation.id)).all()
    engine.dispose()
    return [row.status for row in rows]


def test_rotation_alternates_login_roles_and_the_previous_one_stays_valid(prefix, pg_cluster):
    first_user, second_user = alternating_users(prefix)
    one = rotate_database_credentials()
    first = current_credentials(prefix)
    assert (one["user"], first.username) == (first_user, first_user)
    assert can_log_in(pg_cluster, first.username, first.password)

    two = rotate_database_credentials()
    second = current_credentials(prefix)
    assert (two["user"], two["previous_user"], second.username) == (second_user, first_user, second_user)
    assert can_log_in(pg_cluster, second.username, second.password)
    assert can_log_in(pg_cluster, first.username, first.password), "the previous credential must stay valid"
    with psycopg.connect(pg_cluster.superuser_dsn("textbook")) as conn:
        members = {row[0] for row in conn.execute(
            "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member "
            "JOIN pg_roles r ON r.oid = a.roleid WHERE r.rolname = 'textbook_app'")}
    assert {first_user, second_user} <= members
    assert audit_statuses(prefix, database_credentials_secret_name(prefix)) == ["completed", "completed"]


def test_a_failure_after_the_password_was_set_restores_the_previous_one(prefix, pg_cluster, monkeypatch):
    rotate_database_credentials()  # a
    rotate_database_credentials()  # b; a's credential is now the previous version
    previous = current_credentials(prefix)
    name = database_credentials_secret_name(prefix)
    old_a = DatabaseCredentials.parse(PrefectSecretStore().previous(name).value.get_secret_value(), name=name)

    def store_goes_away(self, name, version_id):
        raise SecretStoreError("Prefect's API is unreachable (injected at the promote step)")

    monkeypatch.setattr(PrefectSecretStore, "promote", store_goes_away)
    with pytest.raises(SecretStoreError, match="injected"):
        rotate_database_credentials()  # would have reset a's password
    assert current_credentials(prefix) == previous, "the current credential must not change"
    assert can_log_in(pg_cluster, old_a.username, old_a.password), "a's previous password must be back"
    assert can_log_in(pg_cluster, previous.username, previous.password)
    with pytest.raises(SecretStoreError):
        PrefectSecretStore().pending(name)
    assert audit_statuses(prefix, name)[-1] == "rolled_back"


def test_a_rejected_credential_fails_clearly_and_changes_nothing(prefix, pg_cluster, monkeypatch):
    rotate_database_credentials()
    before = current_credentials(prefix)
    # The next role can't log in at all (as when pg_hba or a connection limit refuses it).
    second_user = alternating_users(prefix)[1]
    with psycopg.connect(pg_cluster.superuser_dsn(), autocommit=True) as conn:
        conn.execute(f'ALTER ROLE "{second_user}" NOLOGIN')
    try:
        with pytest.raises(CredentialRejected, match=f"refused the new credential of {second_user}"):
            rotate_database_credentials()
    finally:
        with psycopg.connect(pg_cluster.superuser_dsn(), autocommit=True) as conn:
            conn.execute(f'ALTER ROLE "{second_user}" LOGIN')
    assert current_credentials(prefix) == before
    assert can_log_in(pg_cluster, before.username, before.password)
    assert audit_statuses(prefix, database_credentials_secret_name(prefix))[-1] == "rolled_back"


def test_service_keeps_answering_while_credentials_rotate(prefix, ingested_textbook, pg_cluster, caplog):
    """A load loop of /v1/chat through two rotations: no non-2xx, and new connections use the current user.

    The service starts as user a. The refresh interval is long, so after the second rotation (which resets a's
    password) its cached credential is refused: the service must re-read the store on that authentication failure.
    """
    from prefect.settings import PREFECT_API_URL

    caplog.set_level(logging.INFO, logger="app.core.db")
    first_user, second_user = alternating_users(prefix)
    rotate_database_credentials()
    service_settings = prefix.model_copy(update={
        "secrets_source": "store", "prefect_api_url": PREFECT_API_URL.value(), "secret_refresh_s": 3600.0,
        "db_pool_size": 2,
    })
    statuses: list[int] = []
    stop = threading.Event()

    def load(client: TestClient) -> None:
        while not stop.is_set():
            statuses.append(client.post("/v1/chat", json={"question": "What is a ROS 2 topic?"}).status_code)

    def session_user(client: TestClient) -> str:
        with client.app.state.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT session_user").scalar()

    with TestClient(create_app(service_settings), raise_server_exceptions=False) as client:
        assert client.post("/v1/chat", json={"question": "warm up"}).status_code == 200
        assert session_user(client) == first_user
        loop = threading.Thread(target=load, args=(client,))
        loop.start()
        try:
            for expected in (second_user, first_user):
                assert rotate_database_credentials()["user"] == expected
                client.app.state.engine.dispose()  # the pool turns over: later requests open new connections
                wait_until(lambda served=len(statuses): len(statuses) >= served + 3, timeout_s=30,
                           what="requests on new connections")
        finally:
            stop.set()
            loop.join()
        assert client.post("/v1/chat", json={"question": "What is a digital twin?"}).status_code == 200
        assert session_user(client) == current_credentials(prefix).username == first_user
    assert len(statuses) > 5 and set(statuses) == {200}, f"non-2xx answers during rotation: {sorted(set(statuses))}"
    assert "database login refused; retrying with the secret store's new credentials" in caplog.text


def test_a_malformed_credentials_secret_is_a_clear_error(prefix):
    name = database_credentials_secret_name(prefix)
    store = PrefectSecretStore()
    store.promote(name, store.stage(name, SecretStr("not json")))
    with pytest.raises(SecretSourceError, match="is malformed: expected JSON with username and password"):
        rotate_database_credentials()


def test_no_database_password_in_logs_artifacts_or_audit(prefix, caplog):
    import asyncio

    from prefect.client.orchestration import get_client

    caplog.set_level(logging.DEBUG)
    rotate_database_credentials()
    rotate_database_credentials()
    name = database_credentials_secret_name(prefix)
    passwords = [current_credentials(prefix).password,
                 DatabaseCredentials.parse(PrefectSecretStore().previous(name).value.get_secret_value(), name=name).password]

    async def artifacts() -> list[str]:
        async with get_client() as client:
            return [str(a.data) for a in await client.read_artifacts()]

    engine = create_db_engine(prefix)
    with Session(engine) as db:
        audit = [repr(r.model_dump()) for r in db.exec(select(SecretRotation).where(SecretRotation.secret_name == name))]
    engine.dispose()
    captured = "\n".join([caplog.text, *asyncio.run(artifacts()), *audit])
    assert name in captured, "the capture must contain the rotation's records"
    for password in passwords:
        assert password not in captured


def test_an_unreachable_secret_store_fails_the_run_clearly_and_changes_nothing(prefix, settings_env, pg_cluster):
    settings_env({"SECRET_BACKEND": "aws", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                  "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    with psycopg.connect(pg_cluster.superuser_dsn("textbook")) as conn:
        before = conn.execute("SELECT count(*) FROM secret_rotation").fetchone()[0]
    state = rotate_database_credentials(return_state=True)
    assert state.is_failed(), "a failed run, not a crash"
    with pytest.raises(SecretStoreError, match="AWS Secrets Manager is unreachable"):
        state.result()
    with psycopg.connect(pg_cluster.superuser_dsn("textbook")) as conn:
        assert conn.execute("SELECT count(*) FROM secret_rotation").fetchone()[0] == before, "nothing half done"
