"""CORS: the docs site's origins may call the API from a browser, other pages may not."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import SettingsError, load_settings

SITE = "http://127.0.0.1:3000"


@pytest.fixture(scope="module")
def cors_client():
    """No lifespan: CORS is decided before any route touches Postgres or the index."""
    return TestClient(create_app(load_settings(_env_file=None, cors_allowed_origins=f"{SITE},https://book.example.org")))


def test_the_sites_origin_gets_the_allow_origin_header(cors_client):
    response = cors_client.get("/health", headers={"Origin": SITE})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SITE
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


def test_another_origin_gets_no_allow_origin_header(cors_client):
    response = cors_client.get("/health", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def test_preflight_for_the_chat_stream_is_allowed_only_for_listed_origins(cors_client):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    allowed = cors_client.options("/v1/chat/stream", headers={"Origin": "https://book.example.org", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://book.example.org"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    refused = cors_client.options("/v1/chat/stream", headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_error_responses_carry_the_header_so_the_site_can_read_them(cors_client):
    response = cors_client.get("/v1/nothing-here", headers={"Origin": SITE})
    assert response.status_code == 404 and response.headers["access-control-allow-origin"] == SITE


def test_the_default_allows_the_local_site():
    assert load_settings(_env_file=None).cors_allowed_origins == ["http://127.0.0.1:3000", "http://localhost:3000"]


@pytest.mark.parametrize("value", ["*", "http://127.0.0.1:3000,*", "https://book.example.org/docs"])
def test_a_wildcard_or_a_non_origin_is_refused(monkeypatch, value):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", value)
    with pytest.raises(SettingsError, match="CORS_ALLOWED_ORIGINS"):
        load_settings(_env_file=None)
