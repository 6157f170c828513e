"""Fixtures shared by the service's tests in tests/app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings, load_settings
from tests.support.openai_server import FakeOpenAI


@pytest.fixture
def openai_client(fake_openai: FakeOpenAI, settings: Settings, ingested_textbook: dict) -> Iterator[TestClient]:
    """The service with OpenAI answers and embeddings of queries from `fake_openai`, on the ingested textbook."""
    openai_settings = load_settings(
        _env_file=None, database_url=settings.database_url, answer_backend="openai", openai_api_key="sk-test",
        openai_base_url=fake_openai.base_url, openai_timeout_s=1.0, openai_max_retries=0,
    )
    with TestClient(create_app(openai_settings), raise_server_exceptions=False) as client:
        yield client
