"""What the second attack pass found, each against the real service (`python -m app serve`, loopback).

Which failures write a query_log row: a request the query service took on (its body was valid and it passed
the key, rate and load checks) gets one row whatever its end: ok, not_covered, fallback, error (not_found,
invalid_request for an unknown chapter or a foreign selection page, index or embedding unavailable) or
client_closed. Refusals before that (schema 422, 401, 403, 408, 413, 429, 503 overloaded, 504) write none: they
are counted in `rag_query_errors_total{error_code}` and `rag_http_requests_total{route,code}`.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text

from app.rag.vector_index.sparse_copy import copy_index_tree
from app.settings import PROJECT_ROOT
from tests.support.forwarding_proxy import forwarding_proxy
from tests.support.openai_server import FakeOpenAI
from tests.support.service_process import run_service
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def index_copy(settings, ingested_textbook, tmp_path_factory):
    """A fresh copy of the session's index per service: the embedded index opens in one process."""

    def copy() -> str:
        target = tmp_path_factory.mktemp("attack-pass") / "index"
        copy_index_tree(settings.resolved_index_dir, target)
        return str(target)

    return copy


@pytest.fixture(scope="module")
def fake_openai():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def service(settings, index_copy, fake_openai, tmp_path_factory):
    """Default settings (TRUSTED_PROXIES unset), generous limits, OpenAI answers from a local fake, INFO logs."""
    env = {"DATABASE_URL": settings.database_url, "INDEX_DIR": index_copy(), "LOG_LEVEL": "INFO",
           "RATE_LIMIT_ANONYMOUS": "1000", "ANSWER_BACKEND": "openai", "OPENAI_API_KEY": "sk-test",
           "OPENAI_BASE_URL": fake_openai.base_url, "OPENAI_TIMEOUT_S": "20", "OPENAI_MAX_RETRIES": "0"}
    with run_service(env, tmp_path_factory.mktemp("attack-log") / "api.log") as running:
        yield running


@pytest.fixture(scope="module")
def db(settings):
    engine = create_engine(settings.database_url)
    yield engine
    engine.dispose()


def rows(db, column: str, value: str) -> list[dict]:
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(
            text(f"SELECT request_id, correlation_id, status, error_code, endpoint FROM query_log WHERE {column} = :v"),
            {"v": value})]


def error_count(base: str, code: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(f'rag_query_errors_total{{error_code="{code}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- 2: a reused X-Request-ID ---------------------------------------------------------------------------------
def test_a_reused_x_request_id_is_a_correlation_id_not_a_key(service, db):
    mine = str(uuid.uuid4())
    answers = [httpx.post(f"{service.base}/v1/search", json={"query": "ROS 2 topic", "k": 1},
                          headers={"X-Request-ID": mine}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], answers[-1].text
    ids = [a.json()["request_id"] for a in answers]
    assert ids[0] != ids[1] and all(a.headers["x-request-id"] == i for a, i in zip(answers, ids, strict=True))
    assert all(a.headers["x-correlation-id"] == mine for a in answers)
    logged = rows(db, "correlation_id", mine)
    assert sorted(str(r["request_id"]) for r in logged) == sorted(ids)
    assert "Traceback" not in service.log_tail(20000) and "database_error" not in service.log_tail(20000)


# -- 3: abandoned streams -------------------------------------------------------------------------------------
def test_a_stream_the_reader_abandons_is_logged_as_client_closed(service, db, fake_openai):
    fake_openai.mode, fake_openai.slow_seconds = "slow", 4
    answered = fake_openai.answered
    try:
        with httpx.Client(timeout=20) as client, client.stream(
                "POST", f"{service.base}/v1/chat/stream", json={"question": "What does a Kalman filter predict?"}) as r:
            assert r.status_code == 200
            request_id = r.headers["x-request-id"]
            first = next(r.iter_text())
            assert first.startswith("event: start")
        # the connection is closed here, while the answer is still being written
        logged = wait_until(lambda: rows(db, "request_id", request_id), timeout_s=15,
                            what="the query_log row of the abandoned stream", poll_s=0.2)
    finally:
        fake_openai.mode = "ok"
    assert logged[0]["status"] == "client_closed" and logged[0]["endpoint"] == "chat_stream"
    wait_until(lambda: fake_openai.answered > answered, timeout_s=fake_openai.slow_seconds + 15,
               what="the model's late answer")  # it is dropped: still one row, still client_closed
    assert [r["status"] for r in rows(db, "request_id", request_id)] == ["client_closed"]


# -- 4 (without a proxy): loopback is not trusted by default ----------------------------------------------------
def test_without_trusted_proxies_a_local_client_cannot_pick_its_bucket(service):
    remaining = [int(httpx.post(f"{service.base}/v1/search", json={"query": "ZMP", "k": 1},
                                headers={"X-Forwarded-For": f"198.51.100.{i}"}).headers["x-ratelimit-remaining"])
                 for i in range(1, 4)]
    assert remaining[0] > remaining[1] > remaining[2], "each forged address got a fresh budget"


# -- 6 ---------------------------------------------------------------------------------------------------------
def test_an_unknown_chapter_and_a_foreign_page_are_logged_as_invalid_requests(service, db):
    chapter = httpx.post(f"{service.base}/v1/search", json={"query": "ZMP", "chapter": "no-such-chapter"})
    foreign = httpx.post(f"{service.base}/v1/chat", json={"question": "What is this?", "selection": {
        "text": "a selected sentence", "page_url": "https://evil.example/docs/intro"}})
    for answer in (chapter, foreign):
        assert answer.status_code == 422 and answer.json()["error_code"] == "invalid_request", answer.text
        logged = rows(db, "request_id", answer.json()["request_id"])
        assert [(r["status"], r["error_code"]) for r in logged] == [("error", "invalid_request")]


def test_refusals_before_the_query_write_no_row_but_are_counted_by_error_code(service, db):
    before = {code: error_count(service.base, code) for code in ("payload_too_large", "invalid_request")}
    too_large = httpx.post(f"{service.base}/v1/chat", content=b"x" * 70000, headers={"content-type": "application/json"})
    schema = httpx.post(f"{service.base}/v1/chat", json={"question": ""})
    assert too_large.status_code == 413 and schema.status_code == 422
    assert error_count(service.base, "payload_too_large") == before["payload_too_large"] + 1
    assert error_count(service.base, "invalid_request") == before["invalid_request"] + 1
    assert not rows(db, "request_id", schema.json()["request_id"])


def test_cors_preflights_carry_the_security_headers(service):
    preflight = httpx.options(f"{service.base}/v1/chat", headers={
        "Origin": "http://127.0.0.1:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "http://127.0.0.1:3000"
    assert preflight.headers["x-content-type-options"] == "nosniff"
    assert preflight.headers["content-security-policy"].startswith("default-src 'none'")
    assert preflight.headers["x-frame-options"] == "DENY"


def test_a_trailing_slash_is_a_404_not_a_redirect_built_from_the_host_header(service):
    answer = httpx.post(f"{service.base}/v1/chat/", json={"question": "ZMP?"}, headers={"Host": "evil.example"})
    assert answer.status_code == 404 and "location" not in answer.headers


def test_percent_encoded_keys_are_scrubbed_from_the_log(service):
    secret = "tbo%5FpercentEncodedSecret123"
    httpx.get(f"{service.base}/v1/sessions/{uuid.uuid4()}?api_key_hint={secret}&other=sk%2DanotherSecret456")
    wait_until(lambda: "/v1/sessions/" in service.log_tail(20000), timeout_s=5, what="the access log line")
    log = service.log_tail(200000)
    assert "percentEncodedSecret123" not in log and "anotherSecret456" not in log
    assert "tbo%5F***" in log


def test_selected_text_is_cleaned_and_an_all_nul_selection_is_refused(service, db):
    blank = httpx.post(f"{service.base}/v1/chat", json={"question": "What is this?", "selection": {
        "text": "\x00\x00\u202e\x00", "page_url": "/docs/intro"}})
    assert blank.status_code == 422 and "selection.text" in blank.json()["detail"]
    from app.api.schemas import ChatRequest

    cleaned = ChatRequest(question="What is this?", selection={"text": "\u202eZMP\x00 balance", "page_url": "/docs/x"})
    assert cleaned.selection.text == "ZMP balance"


def test_feedback_keeps_the_last_rating_per_answer(service, db):
    answer = httpx.post(f"{service.base}/v1/search", json={"query": "ROS 2", "k": 1}).json()
    posted = [httpx.post(f"{service.base}/v1/feedback", json={"request_id": answer["request_id"], "rating": rating,
                                                              "comment": f"take {n}"})
              for n, rating in enumerate((1, -1, -1))]
    assert [p.status_code for p in posted] == [201, 201, 201]
    assert len({p.json()["id"] for p in posted}) == 1
    with db.connect() as conn:
        stored = conn.execute(text("SELECT rating, comment FROM feedback WHERE request_id = :r"),
                              {"r": answer["request_id"]}).all()
    assert [tuple(s) for s in stored] == [(-1, "take 2")]


@pytest.mark.parametrize("days", ["0", "-3"])
def test_keys_create_refuses_zero_and_negative_expiry(settings, days):
    result = subprocess.run([sys.executable, "-m", "app", "keys", "create", "--name", "never", "--expires-days", days],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                            env={"DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "1 day or more" in result.stderr, result.stderr
    with create_engine(settings.database_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_key WHERE name = 'never'")).scalar() == 0


# -- 4 and 5: behind a proxy, and a Retry-After that holds ------------------------------------------------------
def blueprint_trusted_proxies() -> str:
    blueprint = yaml.safe_load((PROJECT_ROOT / "render.yaml").read_text())
    return next(v["value"] for g in blueprint["envVarGroups"] for v in g["envVars"] if v["key"] == "TRUSTED_PROXIES")


@pytest.fixture(scope="module")
def limited_service(settings, index_copy, tmp_path_factory):
    """render.yaml's TRUSTED_PROXIES plus 127.0.0.2, standing in for Render's proxy; 3 requests per 15 s."""
    env = {"DATABASE_URL": settings.database_url, "INDEX_DIR": index_copy(),
           "TRUSTED_PROXIES": f"{blueprint_trusted_proxies()},127.0.0.2/32",
           "RATE_LIMIT_ANONYMOUS": "3", "RATE_LIMIT_WINDOW_S": "15"}
    with run_service(env, tmp_path_factory.mktemp("limited-log") / "api.log") as running:
        yield running


def test_two_readers_behind_the_edge_proxy_have_separate_buckets(limited_service):
    host, port = limited_service.base.removeprefix("http://").split(":")
    with forwarding_proxy((host, int(port)), source_address="127.0.0.2") as (proxy_host, proxy_port):
        def reader(address: str) -> httpx.Client:
            return httpx.Client(base_url=f"http://{proxy_host}:{proxy_port}", timeout=20,
                                transport=httpx.HTTPTransport(local_address=address))

        with reader("127.0.0.3") as first, reader("127.0.0.4") as second:
            search = {"query": "ROS 2", "k": 1}
            firsts = [first.post("/v1/search", json=search).status_code for _ in range(4)]
            forged = first.post("/v1/search", json=search, headers={"X-Forwarded-For": "203.0.113.50"})
            seconds = [second.post("/v1/search", json=search).status_code for _ in range(3)]
    assert firsts == [200, 200, 200, 429], "one reader behind the proxy is one bucket"
    assert forged.status_code == 429, "what the reader writes left of itself is not believed"
    assert seconds == [200, 200, 200], "another reader behind the same proxy has its own budget"


def test_a_client_that_waits_the_retry_after_gets_through(limited_service):
    with httpx.Client(base_url=limited_service.base, timeout=20) as client:
        def search() -> httpx.Response:
            return client.post("/v1/search", json={"query": "ZMP", "k": 1})

        for _ in range(2):
            statuses = []
            while (answer := search()).status_code == 200:
                statuses.append(200)
                assert len(statuses) <= 10
            assert answer.status_code == 429
            wait = int(answer.headers["retry-after"])
            impatient = [search() for _ in range(5)]  # refused too, and must not push the window away
            assert all(r.status_code == 429 for r in impatient)
            assert all(int(r.headers["retry-after"]) <= wait for r in impatient)
            time.sleep(wait)
            assert search().status_code == 200, f"refused again after waiting the advertised {wait} s"
