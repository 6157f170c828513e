"""The service reads rotated secrets: Prefect's REST API (blocks) or AWS Secrets Manager (moto), and degrades cleanly."""

from __future__ import annotations

import boto3
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.core.secret_source import (
    AwsSecretsReader,
    PrefectBlockReader,
    RefreshingSecret,
    SecretSourceError,
    openai_api_key_secret_name,
)
from app.main import create_app
from tests.conftest import free_port
from tests.support.moto import MotoServer
from tests.support.openai_server import FakeOpenAI


@pytest.fixture
def prefect_api(prefect_harness) -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def save_block(name: str, value: object) -> None:
    from prefect.blocks.system import Secret

    Secret(value=value).save(name, overwrite=True)


def test_prefect_reader_reads_rotated_and_plain_secrets_and_none_when_missing(prefect_api):
    save_block("reader-rotated", {"value": "v-two", "version_id": "2"})
    save_block("reader-plain", "plain-value")
    reader = PrefectBlockReader(prefect_api)
    assert reader.read("reader-rotated") == "v-two"
    assert reader.read("reader-plain") == "plain-value"
    assert reader.read("reader-missing") is None


def test_unreachable_store_is_a_clear_error():
    with pytest.raises(SecretSourceError, match="unreachable"):
        PrefectBlockReader(f"http://127.0.0.1:{free_port()}/api", timeout_s=1).read("anything")


def test_refreshing_secret_caches_rereads_and_survives_a_store_outage(prefect_api):
    now = [0.0]
    save_block("refreshing", {"value": "first", "version_id": "1"})
    reader = PrefectBlockReader(prefect_api)
    secret = RefreshingSecret(reader, "refreshing", refresh_s=60, clock=lambda: now[0])
    assert secret.get() == "first"
    save_block("refreshing", {"value": "second", "version_id": "2"})
    assert secret.get() == "first", "within the refresh interval the cached value is used"
    now[0] = 61
    assert secret.get() == "second"
    reader._url = f"http://127.0.0.1:{free_port()}/api"  # the store goes away
    now[0] = 200
    assert secret.get() == "second", "a store outage keeps the last good value"
    assert secret.refresh() == "second"
    fresh = RefreshingSecret(reader, "refreshing", refresh_s=60)
    with pytest.raises(SecretSourceError):
        fresh.get()


def test_aws_reader_reads_awscurrent_and_none_when_missing():
    moto = MotoServer(free_port()).start()
    try:
        client = boto3.client("secretsmanager", endpoint_url=moto.endpoint_url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_secret(Name="aws-read", SecretString="one")
        client.put_secret_value(SecretId="aws-read", SecretString="pending-value", VersionStages=["AWSPENDING"])
        reader = AwsSecretsReader(client)
        assert reader.read("aws-read") == "one"
        assert reader.read("aws-missing") is None
    finally:
        moto.stop()


def test_service_uses_the_stores_openai_key_and_falls_back_when_the_store_is_down(settings, ingested_textbook,
                                                                                   prefect_api):
    store_key = "sk-from-the-store-0123456789"
    fake = FakeOpenAI(accepted_keys={store_key}).start()
    prefix = f"svc{free_port()}"
    service = settings.model_copy(update={
        "secrets_source": "store", "prefect_api_url": prefect_api, "answer_backend": "openai",
        "openai_base_url": fake.base_url, "openai_api_key": SecretStr("sk-stale-settings-key"),
        "secret_name_prefix": prefix, "secret_refresh_s": 0.1,
    })
    save_block(openai_api_key_secret_name(service), {"value": store_key, "version_id": "1"})
    try:
        with TestClient(create_app(service), raise_server_exceptions=False) as client:
            answer = client.post("/v1/chat", json={"question": "What is a ROS 2 topic?"}).json()
            assert answer["answer_backend"] == "openai"
            with TestClient(create_app(service.model_copy(update={
                    "prefect_api_url": f"http://127.0.0.1:{free_port()}/api"})),
                    raise_server_exceptions=False) as broken:
                response = broken.post("/v1/chat", json={"question": "What is a ROS 2 topic?"})
    finally:
        fake.stop()
    assert response.status_code == 503 and response.headers.get("retry-after")
    assert "database" in response.json()["detail"].lower() or "database" in response.text.lower()


def test_malformed_database_credentials_secret_gives_503_not_a_stack_trace(settings, ingested_textbook, prefect_api):
    prefix = f"bad{free_port()}"
    save_block(f"{prefix}-database-credentials", {"value": "username=nobody", "version_id": "1"})
    service = settings.model_copy(update={"secrets_source": "store", "prefect_api_url": prefect_api,
                                          "secret_name_prefix": prefix})
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        response = client.post("/v1/chat", json={"question": "What is a ROS 2 topic?"})
    assert response.status_code == 503
    assert "Traceback" not in response.text


def test_an_unreadable_openai_key_is_an_openai_error_so_answers_fall_back(settings):
    import openai

    from app.core.openai_client import create_openai_client

    service = settings.model_copy(update={"secrets_source": "store", "answer_backend": "openai",
                                          "prefect_api_url": f"http://127.0.0.1:{free_port()}/api"})
    with pytest.raises(openai.OpenAIError, match="the OpenAI key is unavailable: .*unreachable"):
        create_openai_client(service).models.list()
