"""OpenAI key rotation on both secret stores (Prefect blocks; AWS Secrets Manager on moto's server); the new key
reaches the flow only through a Prefect Secret block, never as a parameter."""

from __future__ import annotations

import asyncio
import io
import logging

import boto3
import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from app.core.db import create_db_engine
from app.core.models import SecretRotation
from app.core.secret_source import openai_api_key_secret_name as openai_secret_name
from app.settings import get_settings
from flows.cli import InvalidParameter
from flows.rotate_openai_key import main, rotate_openai_key
from tasks.openai_api import CredentialRejected
from tasks.secrets import AwsSecretsManagerStore, PrefectSecretStore, SecretStoreError, secret_store_for
from tests.conftest import free_port
from tests.support.moto import MotoServer
from tests.support.openai_server import FakeOpenAI

pytestmark = pytest.mark.usefixtures("prefect_harness")
OLD, NEW, BAD = "sk-old-0123456789abcdef", "sk-new-fedcba9876543210", "sk-bad-aaaaaaaaaaaaaaaa"


@pytest.fixture
def openai_server(settings_env):
    server = FakeOpenAI(accepted_keys={OLD, NEW}).start()
    settings_env({"OPENAI_BASE_URL": server.base_url})
    yield server
    server.stop()


@pytest.fixture(params=["prefect", "aws"])
def store(request, settings, openai_server, settings_env):
    prefix = {"SECRET_NAME_PREFIX": f"t{request.param}{free_port()}"}
    if request.param == "aws":
        moto = MotoServer(free_port()).start()
        settings_env({**prefix, "SECRET_BACKEND": "aws", "AWS_ENDPOINT_URL": moto.endpoint_url,
                      "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        client = boto3.client("secretsmanager", endpoint_url=moto.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_secret(Name=openai_secret_name(get_settings()), SecretString=OLD)
        yield secret_store_for(get_settings())
        moto.stop()
    else:
        settings_env(prefix)
        backend = secret_store_for(get_settings())
        name = openai_secret_name(get_settings())
        backend.stage(name, SecretStr(OLD))
        backend.promote(name, backend.pending(name).version_id)
        yield backend


def key_in_block(value: str, name: str = "openai-key-incoming") -> str:
    """A Prefect Secret block holding a new key, as an operator would create one; returns its name."""
    from prefect.blocks.system import Secret

    Secret(value=value).save(name, overwrite=True)
    return name


def staging_blocks() -> dict[str, str]:
    """The CLI's staging blocks on the server: {name: value}."""
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        names = [d.name for d in client.read_block_documents() if d.name and "-staged-" in d.name]
    return {name: str(Secret.load(name).get()) for name in names}


def audit_rows(settings, name: str) -> list[SecretRotation]:
    engine = create_db_engine(settings)
    with Session(engine) as db:
        rows = db.exec(select(SecretRotation).where(SecretRotation.secret_name == name)).all()
    engine.dispose()
    return list(rows)


def test_rotation_promotes_a_verified_key_and_keeps_the_old_one_readable(settings, store):
    name = openai_secret_name(get_settings())
    before = store.current(name).version_id
    result = rotate_openai_key(new_key_block=key_in_block(NEW))
    current = store.current(name)
    assert current.value.get_secret_value() == NEW and current.version_id == result["new_version_id"]
    assert result["old_version_id"] == before
    if isinstance(store, AwsSecretsManagerStore):
        previous = store._get(name, "AWSPREVIOUS")
    else:
        previous = store._load(f"{name}-previous")
    assert previous.value.get_secret_value() == OLD
    with pytest.raises(SecretStoreError):
        store.pending(name)
    [row] = audit_rows(settings, name)
    assert (row.status, row.old_version_id, row.new_version_id) == ("completed", before, result["new_version_id"])


def test_rejected_key_keeps_the_old_one_and_fails_clearly(settings, store):
    name = openai_secret_name(get_settings())
    with pytest.raises(CredentialRejected, match="rejected the new key \\(401\\); the old key stays current"):
        rotate_openai_key(new_key_block=key_in_block(BAD))
    assert store.current(name).value.get_secret_value() == OLD
    with pytest.raises(SecretStoreError):
        store.pending(name)
    [row] = audit_rows(settings, name)
    assert row.status == "failed" and "CredentialRejected" in row.error


def test_no_secret_value_in_logs_artifacts_or_audit(settings, store, caplog):
    caplog.set_level(logging.DEBUG)
    rotate_openai_key(new_key_block=key_in_block(NEW))
    with pytest.raises(CredentialRejected):
        rotate_openai_key(new_key_block=key_in_block(BAD))

    async def artifacts() -> list[str]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return [str(a.data) for a in await client.read_artifacts()]

    captured = caplog.text + "\n".join(asyncio.run(artifacts()))
    captured += "\n".join(repr(r.model_dump()) for r in audit_rows(settings, openai_secret_name(get_settings())))
    for value in (OLD, NEW, BAD):
        assert value not in captured


def test_missing_secret_block_is_a_clear_error(settings):
    with pytest.raises(SecretStoreError, match="does not exist"):
        PrefectSecretStore().current("no-such-secret-anywhere")


def test_the_flow_takes_the_name_of_a_block_never_the_key():
    """Parameters are shown in the UI's Parameters tab: the schema the deployment gets has one field, a block name."""
    schema = rotate_openai_key.parameters.model_dump_for_openapi()
    assert list(schema["properties"]) == ["new_key_block"] and schema["required"] == ["new_key_block"]
    assert schema["properties"]["new_key_block"]["pattern"] == "^[a-z0-9][a-z0-9-]{0,127}$"


def test_a_missing_block_is_refused_before_any_work(settings, store):
    name = openai_secret_name(get_settings())
    before = store.current(name).version_id
    with pytest.raises(InvalidParameter, match="new_key_block: there is no Prefect Secret block named 'no-such-key'"):
        rotate_openai_key(new_key_block="no-such-key")
    with pytest.raises(InvalidParameter, match="new_key_block: the Secret block 'blank-key' is empty"):
        rotate_openai_key(new_key_block=key_in_block("  ", "blank-key"))
    assert store.current(name).version_id == before and audit_rows(settings, name) == []


def test_the_cli_stages_the_key_in_a_block_and_deletes_it_after_a_success(settings, store, monkeypatch, capsys):
    name = openai_secret_name(get_settings())
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{NEW}\n"))
    assert main([]) == 0
    assert store.current(name).value.get_secret_value() == NEW
    assert staging_blocks() == {}
    [row] = audit_rows(settings, name)
    assert row.status == "completed"
    assert f"{name}: version {row.new_version_id} is current" in capsys.readouterr().out


def test_the_cli_keeps_the_staged_key_after_a_failure_and_says_where(settings, store, monkeypatch, capsys):
    name = openai_secret_name(get_settings())
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{BAD}\n"))
    with pytest.raises(CredentialRejected):
        main([])
    [(block, value)] = staging_blocks().items()
    assert block.startswith(f"{name}-staged-") and value == BAD
    assert f"the new key stays in the Secret block {block} (re-run with --new-key-block {block}" \
        in capsys.readouterr().err
    assert store.current(name).value.get_secret_value() == OLD
    from prefect.blocks.system import Secret

    Secret.delete(block)


def test_the_cli_refuses_an_empty_key(settings, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    with pytest.raises(InvalidParameter, match="no new key given"):
        main([])
    assert staging_blocks() == {}
