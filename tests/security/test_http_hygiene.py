"""Security headers, trusted proxies, the request timeout, clean questions (Urdu intact) and JSON on every error."""

from __future__ import annotations

import base64
import hashlib
import re
import time

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import load_settings
from tests.support.openai_server import FakeOpenAI


@pytest.fixture(scope="module")
def web(settings, ingested_textbook):
    proxied = load_settings(_env_file=None, database_url=settings.database_url, trusted_proxies="10.0.0.0/8")
    with TestClient(create_app(proxied), raise_server_exceptions=False, client=("10.0.0.2", 50000)) as client:
        yield client


def test_security_headers_on_api_answers_and_hsts_only_behind_https(web):
    response = web.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer" and response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "strict-transport-security" not in response.headers
    https = web.get("/health", headers={"X-Forwarded-Proto": "https"})  # from 10.0.0.2, a trusted proxy
    assert https.headers["strict-transport-security"].startswith("max-age=31536000")
    refused = web.post("/v1/chat", content=b"{", headers={"content-type": "application/json"})
    assert refused.status_code == 422 and refused.headers["x-content-type-options"] == "nosniff"


def test_forwarded_proto_from_an_untrusted_peer_is_ignored(settings, ingested_textbook):
    plain = load_settings(_env_file=None, database_url=settings.database_url, trusted_proxies="")
    with TestClient(create_app(plain), client=("10.0.0.2", 50000)) as client:
        assert "strict-transport-security" not in client.get("/health", headers={"X-Forwarded-Proto": "https"}).headers


def test_the_openapi_page_has_a_csp_that_allows_its_own_inline_script_by_hash(web):
    response = web.get("/docs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]+)", csp).group(1)
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.S)
    assert inline and "'unsafe-inline'" not in script_src
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in script_src
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp


def test_a_request_with_no_answer_in_time_gets_a_504_json_message(settings, ingested_textbook):
    fake = FakeOpenAI().start()
    fake.mode, fake.slow_seconds = "slow", 3
    slow = load_settings(_env_file=None, database_url=settings.database_url, answer_backend="openai",
                         openai_api_key="sk-test", openai_base_url=fake.base_url, openai_timeout_s=10,
                         openai_max_retries=0, request_timeout_s=1)
    try:
        with TestClient(create_app(slow), raise_server_exceptions=False) as client:
            started = time.perf_counter()
            response = client.post("/v1/chat", json={"question": "What does a Kalman filter predict?"})
            assert time.perf_counter() - started < 2.5
            assert response.status_code == 504 and response.headers["retry-after"]
            body = response.json()
            assert body["error_code"] == "request_timeout" and "longer than 1 s" in body["detail"]
            assert body["request_id"] == response.headers["x-request-id"]
            assert client.get("/health").status_code == 200
    finally:
        fake.stop()


URDU = "روبوٹ\u200cکی چال میں ZMP کیا ہے؟"  # with a ZWNJ, as Urdu is written


def test_questions_are_normalised_and_stripped_of_control_characters_but_urdu_stays_intact(web):
    sent = "\u202e" + URDU.replace("ZMP", "ZMP\x00\x1b[31m") + "\ufeff\x07  "
    response = web.post("/v1/chat", json={"question": sent, "locale": "ur"})
    assert response.status_code == 200
    session = web.get(f"/v1/sessions/{response.json()['session_id']}").json()
    stored = session["messages"][0]["content"]
    assert stored == URDU.replace("ZMP", "ZMP[31m") and "\u200c" in stored
    presentation_forms = web.post("/v1/search", json={"query": "ﻻ ＲＯＳ"})  # copy-pasted from a PDF
    assert presentation_forms.status_code == 200
    empty = web.post("/v1/search", json={"query": "\x00\u202e\x1b "})
    assert empty.status_code == 422 and "empty once control characters" in empty.json()["detail"]
    feedback = web.post("/v1/feedback", json={"request_id": response.json()["request_id"], "rating": 1,
                                              "comment": "good\x00 answer\u202e"})
    assert feedback.status_code == 201


def test_every_error_path_answers_json_without_a_stack_trace(web, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internals at /work/app/services/chat.py line 42")

    cases = [
        web.get("/no-such-page"),
        web.delete("/v1/chat"),
        web.post("/v1/chat", content=b"{not json", headers={"content-type": "application/json"}),
        web.post("/v1/chat", content=b"hello", headers={"content-type": "text/plain"}),
        web.post("/v1/chat", json={"question": 5, "k": 99}),
        web.post("/v1/chat", json={"question": "x" * 2001}),
        web.get("/v1/sessions/not-a-uuid"),
        web.get("/v1/sessions/00000000-0000-0000-0000-000000000000"),
        web.post("/v1/chat", content=b"{}", headers={"content-type": "application/json", "content-length": "99999999"}),
    ]
    monkeypatch.setattr(web.app.state.chat_service, "chat", boom)
    cases.append(web.post("/v1/chat", json={"question": "What is ROS 2?"}))
    assert [c.status_code for c in cases] == [404, 405, 422, 422, 422, 422, 422, 404, 413, 500]
    for response in cases:
        assert response.headers["content-type"] == "application/json", response.text
        body = response.json()
        assert body["detail"] and body["error_code"] and body["request_id"]
        assert "Traceback" not in response.text and "secret internals" not in response.text


def test_past_the_in_flight_limit_requests_are_shed_with_a_503_at_once():
    import asyncio
    import json

    from app.http.hygiene import InFlightGauge, InFlightLimitMiddleware

    release = asyncio.Event()

    async def slow_app(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(app, path):
        sent = []

        async def send(message):
            sent.append(message)

        await app({"type": "http", "path": path, "state": {}}, None, send)
        return sent

    async def scenario():
        gauge = InFlightGauge(limit=1)
        app = InFlightLimitMiddleware(slow_app, gauge=gauge)
        first = asyncio.create_task(call(app, "/v1/chat"))
        await asyncio.sleep(0.01)
        shed = await call(app, "/v1/chat")
        release.set()
        return await first, shed, gauge.in_flight

    first, shed, in_flight = asyncio.run(scenario())
    assert first[0]["status"] == 200 and in_flight == 0
    assert shed[0]["status"] == 503 and (b"retry-after", b"1") in shed[0]["headers"]
    assert json.loads(shed[1]["body"])["error_code"] == "overloaded"
