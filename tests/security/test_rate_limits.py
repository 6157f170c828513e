"""Rate limits per API key and per client address, counted in Postgres and shared by every worker."""

from __future__ import annotations

import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.core.api_keys import issue_key
from app.core.db import create_db_engine
from app.http.rate_limit import LEASE_SHARE, RateLimiter, client_bucket, evaluate
from app.main import create_app
from app.settings import load_settings
from tests.conftest import free_port

_addresses = (f"198.51.100.{i}" for i in itertools.count(1))  # a fresh client address per client: fresh budget


def limited_settings(settings, **overrides):
    values = {"database_url": settings.database_url, "rate_limit_anonymous": 3, "rate_limit_per_key": 2,
              "trusted_proxies": "10.0.0.0/8", **overrides}
    return load_settings(_env_file=None, **values)


@pytest.fixture(scope="module")
def app_settings(settings, ingested_textbook):
    return limited_settings(settings)


def client_for(app_settings, address: str | None = None) -> TestClient:
    return TestClient(create_app(app_settings), raise_server_exceptions=False, client=(address or next(_addresses), 40000))


def search(client: TestClient, **headers: str):
    return client.post("/v1/search", json={"query": "ROS 2 topic", "k": 1}, headers=headers)


def test_anonymous_requests_get_the_stricter_limit_then_429_with_retry_after(app_settings):
    with client_for(app_settings) as client:
        answers = [search(client) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert all(a.headers["x-ratelimit-limit"] == "3" and 1 <= int(a.headers["x-ratelimit-reset"]) <= 60 for a in answers)
    refused = answers[3]
    body = refused.json()
    assert body["error_code"] == "rate_limited" and body["request_id"] == refused.headers["x-request-id"]
    assert "3 requests per 60 s for this client address" in body["detail"]
    # The window is full: room comes only after it ends, once its count weighs little enough as the previous
    # window's share (the sliding estimate), so Retry-After is past the reset and under two windows.
    assert int(refused.headers["x-ratelimit-reset"]) <= int(refused.headers["retry-after"]) <= 2 * 60


def test_each_key_has_its_own_budget_and_invalid_keys_count_against_the_address(app_settings):
    with client_for(app_settings) as client:
        engine = client.app.state.engine
        first, second = (issue_key(engine=engine, name=f"limits-{n}", scopes=["chat"]).key for n in (1, 2))
        assert [search(client, **{"X-API-Key": first}).status_code for _ in range(3)] == [200, 200, 429]
        refused = search(client, **{"X-API-Key": first})
        assert "for this API key" in refused.json()["detail"] and refused.headers["x-ratelimit-limit"] == "2"
        assert search(client, **{"X-API-Key": second}).status_code == 200
        guesses = [search(client, **{"X-API-Key": f"tbo_guess{i}"}) for i in range(4)]
    assert [g.status_code for g in guesses] == [401, 401, 401, 429]
    assert guesses[0].headers["x-ratelimit-remaining"] == "2"


def test_the_count_is_shared_by_every_worker(app_settings):
    address = next(_addresses)
    with client_for(app_settings, address) as one, client_for(app_settings, address) as two:
        statuses = [search(client).status_code for client in (one, two, one, two)]
    assert statuses == [200, 200, 200, 429]


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(app_settings):
    with client_for(app_settings, "10.1.2.3") as proxy:  # 10.0.0.0/8 is trusted
        statuses = [search(proxy, **{"X-Forwarded-For": f"203.0.113.{i}, 10.9.9.9"}).status_code for i in range(5)]
        assert statuses == [200] * 5  # five clients behind the proxy, one request each
        assert [search(proxy, **{"X-Forwarded-For": "203.0.113.77"}).status_code for _ in range(4)][-1] == 429
    with client_for(app_settings) as direct:  # untrusted peer: its X-Forwarded-For is ignored
        statuses = [search(direct, **{"X-Forwarded-For": f"192.0.2.{i}"}).status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]


@pytest.fixture
def engine(settings):
    """The test cluster's database, as the service's limiter reaches it."""
    engine = create_db_engine(settings)
    yield engine
    engine.dispose()


def db_hits(engine, bucket: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT coalesce(sum(hits), 0) FROM rate_limit_counter WHERE bucket = :b"),
                            {"b": bucket}).scalar()


def test_every_hit_is_spent_once_under_concurrency_from_one_claim(engine):
    limiter = RateLimiter(engine, window_s=3600)
    with ThreadPoolExecutor(8) as pool:
        states = list(pool.map(lambda _: limiter.hit("test:concurrent", 1000), range(40)))
    assert sorted(1000 - s.remaining for s in states) == list(range(1, 41))  # every hit counted exactly once
    assert db_hits(engine, "test:concurrent") == 1000 // LEASE_SHARE  # one claim in Postgres for all 40


def test_leases_never_let_more_than_the_limit_through_across_instances(engine):
    one, two = RateLimiter(engine, window_s=3600), RateLimiter(engine, window_s=3600)
    passed = 0
    for _ in range(150):  # a client whose requests alternate between two instances
        passed += sum(1 for limiter in (one, two) if limiter.hit("test:shared", 100).allowed)
    assert passed == 100
    assert db_hits(engine, "test:shared") == 100  # what a refused claim could not use was taken back


def test_a_client_moving_to_another_instance_loses_at_most_the_old_ones_unspent_lease(engine):
    old, new = RateLimiter(engine, window_s=3600), RateLimiter(engine, window_s=3600)
    claim = 100 // LEASE_SHARE
    assert old.hit("test:moved", 100).allowed  # claims `claim` hits, spends one
    states = [new.hit("test:moved", 100) for _ in range(100)]
    assert sum(s.allowed for s in states) == 100 - claim  # the old instance's claim - 1 unspent are not lost twice
    refused = states[-1]
    assert refused.remaining == 0 and refused.retry_after_s is not None and refused.retry_after_s >= 1


def test_a_limiter_shut_down_gives_its_unspent_lease_back(engine):
    old, new = RateLimiter(engine, window_s=3600), RateLimiter(engine, window_s=3600)
    assert old.hit("test:released", 100).allowed  # claims 100 // LEASE_SHARE hits, spends one
    assert old.release() == 100 // LEASE_SHARE - 1
    assert db_hits(engine, "test:released") == 1
    assert sum(new.hit("test:released", 100).allowed for _ in range(100)) == 99  # nothing lost to the restart
    assert old.release() == 0  # released once


def test_the_service_gives_its_leases_back_when_it_stops(settings, ingested_textbook, engine):
    address = next(_addresses)
    with client_for(limited_settings(settings, rate_limit_anonymous=1000), address) as client:
        assert search(client).status_code == 200  # claims 1000 // LEASE_SHARE hits, spends one
    assert db_hits(engine, client_bucket(address)) == 1  # the rest was given back when the app stopped


def test_windows_older_than_the_previous_one_are_pruned(engine):
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO rate_limit_counter (bucket, window_start, hits) "
                          "VALUES ('test:old', now() - interval '1 hour', 5)"))
    RateLimiter(engine, window_s=60).hit("test:prune", 10)  # a new limiter prunes on its first hit
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rate_limit_counter WHERE bucket = 'test:old'")).scalar() == 0


def test_the_limiter_fails_open_with_one_log_line_when_postgres_is_down(settings, caplog):
    dead = load_settings(_env_file=None, database_url=settings.database_url.replace(
        f":{settings.database_url.rsplit(':', 1)[1].split('/')[0]}/", f":{free_port()}/"), db_connect_timeout_s=1)
    engine = create_db_engine(dead)
    limiter = RateLimiter(engine, window_s=60)
    try:
        with caplog.at_level(logging.WARNING, logger="app.http.rate_limit"):
            assert limiter.hit("test:down", 1) is None
            started = time.perf_counter()
            assert all(limiter.hit("test:down", 1) is None for _ in range(100))  # paused: no connection attempts
            assert time.perf_counter() - started < 0.1
        assert len([r for r in caplog.records if "rate limiter unavailable" in r.message]) == 1
    finally:
        engine.dispose()


def test_sliding_window_estimate():
    fresh = evaluate(hits=1, previous=0, elapsed=10, window=60, limit=10)
    assert fresh.allowed and fresh.remaining == 9 and fresh.reset_s == 50
    # half-way through the window, half of the previous window's 10 requests still count
    assert evaluate(hits=5, previous=10, elapsed=30, window=60, limit=10).allowed
    refused = evaluate(hits=6, previous=10, elapsed=30, window=60, limit=10)
    assert not refused.allowed and refused.retry_after_s == 6  # (1 - 4/10) * 60 - 30
    over = evaluate(hits=11, previous=0, elapsed=59.2, window=60, limit=10)
    # not 1 s: in the next window this window's 10 still count by their share; one more fits after 6 s of it
    assert over.retry_after_s == 7 and over.remaining == 0
    next_window = evaluate(hits=1, previous=10, elapsed=59.2 + 7 - 60, window=60, limit=10)
    assert next_window.allowed, "a client that waits the advertised seconds gets through"


def test_client_buckets():
    assert client_bucket("203.0.113.9") == "addr:203.0.113.9"
    assert client_bucket("2001:db8::1") == client_bucket("2001:db8::ffff") == "addr:2001:db8::/64"
    assert client_bucket("::ffff:203.0.113.9") == "addr:203.0.113.9"


def test_the_previous_window_counts_by_the_share_of_it_still_inside_the_sliding_window(engine):
    with engine.begin() as conn:
        elapsed = conn.execute(text(
            "INSERT INTO rate_limit_counter (bucket, window_start, hits) "
            "VALUES ('test:sliding', to_timestamp(floor(extract(epoch FROM now()) / 3600) * 3600 - 3600), 1000) "
            "RETURNING extract(epoch FROM now()) - floor(extract(epoch FROM now()) / 3600) * 3600")).scalar()
    state = RateLimiter(engine, window_s=3600).hit("test:sliding", 2000)
    expected = 2000 - (1000 * (1 - float(elapsed) / 3600) + 1)
    assert abs(state.remaining - expected) <= 1.5 and state.remaining < 1999
