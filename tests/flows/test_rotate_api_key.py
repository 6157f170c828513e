"""Service API key rotation with a grace period, on the session's Postgres and Prefect harness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from sqlmodel import Session, select

from app.core.api_keys import InvalidApiKey, authenticate, issue_key, revoke_key
from app.core.db import create_db_engine
from app.core.models import ApiKey, SecretRotation
from app.core.secret_source import api_key_secret_name
from app.settings import get_settings
from flows.rotate_api_key import main, revoke_expired_api_keys_flow, rotate_api_key
from tasks.secrets import PrefectSecretStore, SecretStoreError, secret_store_for

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def engine(settings):
    engine = create_db_engine(settings)
    yield engine
    engine.dispose()


def test_rotation_issues_a_successor_and_keeps_the_old_key_for_the_grace_period(settings, engine):
    old = issue_key(engine=engine, name="partner-site", scopes=["chat"])
    result = rotate_api_key(key_id=old.id)
    new_key = secret_store_for(get_settings()).current(api_key_secret_name(settings, "partner-site")).value
    successor = authenticate(engine=engine, key=new_key.get_secret_value())
    assert (successor.id, successor.name, successor.scopes) == (result["new_key_id"], "partner-site", ["chat"])
    still_valid = authenticate(engine=engine, key=old.key)
    assert timedelta(hours=23, minutes=59) < still_valid.expires_at - datetime.now(UTC) <= timedelta(hours=24)
    assert old.key not in repr(result) and new_key.get_secret_value() not in repr(result)


def test_after_the_grace_period_the_old_key_is_refused_and_then_revoked(settings, engine):
    old = issue_key(engine=engine, name="ci-bot", scopes=["chat", "admin"])
    rotate_api_key(key_id=old.id, grace_hours=0)
    with pytest.raises(InvalidApiKey):
        authenticate(engine=engine, key=old.key)
    assert old.id in revoke_expired_api_keys_flow()
    with Session(engine) as db:
        assert db.get(ApiKey, old.id).revoked_at is not None


def test_a_revoked_key_cannot_be_rotated(settings, engine):
    old = issue_key(engine=engine, name="gone", scopes=["chat"])
    revoke_key(engine=engine, key_id=old.id)
    with pytest.raises(InvalidApiKey, match="already revoked or expired"):
        rotate_api_key(key_id=old.id)
    with pytest.raises(SecretStoreError):
        PrefectSecretStore().current(api_key_secret_name(settings, "gone"))


def test_a_failed_hand_over_revokes_the_new_key_and_keeps_the_old_one(settings, engine, monkeypatch):
    old = issue_key(engine=engine, name="handover", scopes=["chat"])

    def store_refuses(self, name, value):
        raise SecretStoreError("Prefect's API is unreachable (injected)")

    monkeypatch.setattr(PrefectSecretStore, "stage", store_refuses)
    with pytest.raises(SecretStoreError, match="injected"):
        rotate_api_key(key_id=old.id)
    assert authenticate(engine=engine, key=old.key).id == old.id
    with Session(engine) as db:
        successors = [k for k in db.query(ApiKey).filter(ApiKey.name == "handover").all() if k.id != old.id]
    assert len(successors) == 1 and successors[0].revoked_at is not None


def test_a_failed_hand_over_is_audited_with_what_was_undone_and_published(settings, engine, monkeypatch):
    """audited_rotation (tasks/run_records.py): the failure, what the flow undid, and the artifact."""
    old = issue_key(engine=engine, name="handover-audit", scopes=["chat"])

    def store_refuses(self, name, value):
        raise SecretStoreError("Prefect's API is unreachable (injected)")

    monkeypatch.setattr(PrefectSecretStore, "stage", store_refuses)
    with pytest.raises(SecretStoreError):
        rotate_api_key(key_id=old.id)
    with Session(engine) as db:
        row = db.exec(select(SecretRotation).where(SecretRotation.secret_name == f"api-key:{old.id}")).one()
    successor = int(row.new_version_id.split()[1])
    assert (row.status, row.new_version_id) == ("failed", f"key {successor} (revoked)")
    assert row.error == (f"SecretStoreError: Prefect's API is unreachable (injected); the new key could not be "
                         f"handed over: key {successor} was revoked")
    with get_client(sync_client=True) as client:
        published = [str(a.data) for a in client.read_artifacts() if a.key == "secret-rotation"]
    assert any(text.startswith("# Rotation of `api-key:handover-audit` (prefect): failed: ") for text in published)


def test_cli_prints_the_new_key_once(settings, engine, capsys):
    old = issue_key(engine=engine, name="cli-key", scopes=["chat"])
    assert main([str(old.id), "--grace-hours", "1"]) == 0
    printed = capsys.readouterr().out
    key = next(line for line in printed.splitlines() if line.startswith("tbo_"))
    assert authenticate(engine=engine, key=key).name == "cli-key"
