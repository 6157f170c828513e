"""X-API-Key: hashed keys with scopes; anonymous access only when switched on."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.api_keys import hash_key, issue_key, revoke_key
from app.core.models import ApiKey
from app.main import create_app
from app.settings import PROJECT_ROOT, load_settings


@pytest.fixture(scope="module")
def locked_client(ingested_textbook, settings):
    closed = load_settings(_env_file=None, database_url=settings.database_url, anonymous_access=False)
    with TestClient(create_app(closed), raise_server_exceptions=False) as client:
        yield client


def ask(client, key: str | None = None):
    headers = {"X-API-Key": key} if key else {}
    return client.post("/v1/chat", json={"question": "What is a ROS 2 topic?"}, headers=headers)


def test_without_anonymous_access_a_key_is_required(locked_client):
    response = ask(locked_client)
    assert response.status_code == 401 and response.json()["error_code"] == "unauthorized"
    assert ask(locked_client, "tbo_not-a-real-key").status_code == 401
    assert locked_client.get("/health").status_code == 200  # health stays open for load balancers


def test_a_valid_key_with_the_chat_scope_is_accepted_and_stored_only_as_a_hash(locked_client):
    engine = locked_client.app.state.engine
    issued = issue_key(engine=engine, name="site", scopes=["chat"])
    assert ask(locked_client, issued.key).status_code == 200
    with Session(engine) as db:
        row = db.get(ApiKey, issued.id)
    assert row.key_hash == hash_key(issued.key) and issued.key not in (row.key_prefix + row.key_hash)


def test_revoked_expired_and_wrong_scope_keys_are_refused(locked_client):
    engine = locked_client.app.state.engine
    revoked = issue_key(engine=engine, name="old", scopes=["chat"])
    assert revoke_key(engine=engine, key_id=revoked.id) and ask(locked_client, revoked.key).status_code == 401
    expired = issue_key(engine=engine, name="expired", scopes=["chat"], expires_in_days=1)
    with Session(engine) as db:  # a day later: no key can be issued already expired
        row = db.get(ApiKey, expired.id)
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        db.add(row)
        db.commit()
    assert ask(locked_client, expired.key).status_code == 401
    with pytest.raises(ValueError, match="expires_in_days must be 1 or more"):
        issue_key(engine=engine, name="never-valid", scopes=["chat"], expires_in_days=0)
    admin_only = issue_key(engine=engine, name="ops", scopes=["admin"])
    response = ask(locked_client, admin_only.key)
    assert response.status_code == 403 and "'chat' scope" in response.json()["detail"]


def test_unknown_scopes_are_refused_at_issue_time(locked_client):
    with pytest.raises(ValueError, match="scopes must be some of chat, admin"):
        issue_key(engine=locked_client.app.state.engine, name="x", scopes=["root"])


def test_cli_creates_lists_and_revokes_keys(settings):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app", "keys", *args], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, timeout=60)

    created = cli("create", "--name", "cli-test", "--scopes", "chat,admin")
    assert created.returncode == 0 and "shown once" in created.stdout
    key_id, key = created.stdout.split()[1], created.stdout.split(": ", 1)[1].split()[0]
    listed = cli("list").stdout
    assert "cli-test" in listed and key not in listed
    assert cli("revoke", key_id).returncode == 0 and cli("revoke", key_id).returncode == 1
    assert cli("create", "--name", "bad", "--scopes", "root").returncode == 2
    engine_settings = load_settings(_env_file=None, database_url=settings.database_url)
    from app.core.db import create_db_engine

    engine = create_db_engine(engine_settings)
    with Session(engine) as db:
        assert db.exec(select(ApiKey).where(ApiKey.name == "cli-test")).one().revoked_at is not None
    engine.dispose()
