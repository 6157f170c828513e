"""/metrics exports what the alert rules read: HTTP outcomes, SLO histogram buckets, CPU, memory, pool, disk."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observability.metrics import service_pids


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics[(name, frozenset(labels.items()))]


def test_metrics_export_what_the_alert_rules_need(client):
    assert client.post("/v1/chat", json={"question": "What is the Zero Moment Point?"}).status_code == 200
    assert client.post("/v1/chat", json={"question": ""}).status_code == 422
    started = time.perf_counter()
    response = client.get("/metrics")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed < 0.5, f"/metrics took {elapsed:.3f} s"
    metrics = samples(response.text)
    assert value(metrics, "rag_http_requests_total", route="/v1/chat", method="POST", code="200") >= 1
    assert value(metrics, "rag_http_requests_total", route="/v1/chat", method="POST", code="422") >= 1
    # the SLO thresholds are bucket bounds, so "requests under the threshold" is exact
    assert ("rag_query_duration_seconds_bucket", frozenset({"endpoint": "chat", "status": "ok", "le": "6.0"}.items())) \
        in metrics or any(n == "rag_query_duration_seconds_bucket" and ("le", "6.0") in labels
                          for n, labels in metrics)
    assert value(metrics, "rag_retrieval_latency_ms_bucket", le="500.0") >= 1
    assert any(n == "rag_llm_generation_latency_ms_bucket" and ("le", "5000.0") in labels for n, labels in metrics)
    assert value(metrics, "service_process_cpu_seconds_total") > 0
    assert value(metrics, "service_process_resident_memory_bytes") > 50e6
    assert value(metrics, "service_memory_limit_bytes") >= value(metrics, "service_process_resident_memory_bytes")
    assert value(metrics, "service_cpu_limit_cores") >= 1
    assert value(metrics, "service_db_pool_connections_max") >= 2
    assert 0 <= value(metrics, "service_db_pool_connections_in_use") <= value(metrics, "service_db_pool_connections_max")
    used, size = value(metrics, "service_disk_used_bytes", folder="data"), value(metrics, "service_disk_size_bytes",
                                                                                  folder="data")
    assert 0 < used <= size


def test_unknown_paths_are_counted_under_one_label(client):
    client.get("/no/such/page/123")
    client.get("/no/such/page/456")
    metrics = samples(client.get("/metrics").text)
    assert not any("/no/such" in dict(labels).get("route", "") for _, labels in metrics)
    assert value(metrics, "rag_http_requests_total", route="unmatched", method="GET", code="404") >= 2


def test_process_metrics_cover_every_live_worker_in_multiprocess_mode(tmp_path):
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        for pid in (worker.pid, dead):
            (tmp_path / f"counter_{pid}.db").write_bytes(b"")
        assert service_pids(tmp_path) == sorted({os.getpid(), worker.pid})
        assert service_pids(None) == [os.getpid()]
    finally:
        worker.kill()
        worker.wait()


def test_the_pool_gauge_follows_checkouts(settings):
    from prometheus_client import REGISTRY

    from app.core.db import create_db_engine
    from app.observability.metrics import instrument_pool, release_pool

    def current(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    engine = create_db_engine(settings)
    before_max, before_used = current("service_db_pool_connections_max"), current("service_db_pool_connections_in_use")
    instrument_pool(engine)
    try:
        assert current("service_db_pool_connections_max") == before_max + 2 * settings.db_pool_size
        with engine.connect(), engine.connect():
            assert current("service_db_pool_connections_in_use") == before_used + 2
        assert current("service_db_pool_connections_in_use") == before_used
    finally:
        release_pool(engine)
        engine.dispose()
    assert current("service_db_pool_connections_max") == before_max
    assert re.match(r"^\d", str(before_max))


@pytest.mark.slow
def test_two_workers_report_their_summed_cpu_memory_and_pools(settings, tmp_path):
    from tests.support.service_process import failing_service
    from tests.support.waiting import wait_until

    with failing_service(settings.database_url, tmp_path / "data", API_WORKERS="2") as service:
        def both_workers_counted() -> dict | None:  # each writes its metric files when it imports them
            with httpx.Client(base_url=service.base, timeout=10) as client:  # a new connection each time
                metrics = samples(client.get("/metrics").text)
            return metrics if value(metrics, "service_processes") == 2 else None

        metrics = wait_until(both_workers_counted, timeout_s=60, what="both workers in /metrics", poll_s=0.2)
    assert value(metrics, "service_processes") == 2
    assert value(metrics, "service_db_pool_connections_max") == 2 * 2 * settings.db_pool_size
    assert value(metrics, "service_process_resident_memory_bytes") > 2 * 50e6


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def active_sessions(engine, clock: ManualClock, refresh_s: float = 15.0, timeout_s: float = 1.0) -> float | None:
    """One scrape's reading, with a new collector as render_metrics builds one per scrape."""
    from app.observability.metrics import ActiveSessionsCollector

    families = list(ActiveSessionsCollector(engine, 1800, refresh_s, timeout_s, clock=clock).collect())
    return families[0].samples[0].value if families else None


def counted_queries(engine) -> list[str]:
    from sqlalchemy import event

    statements: list[str] = []

    def seen(conn, cursor, statement, *_):
        if "FROM chat_session" in statement:
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    return statements


def add_active_session(engine) -> None:
    from sqlmodel import Session

    from app.core.models import ChatSession

    with Session(engine) as db:
        db.add(ChatSession(locale="en", title="metrics cache"))
        db.commit()


def test_active_sessions_are_counted_once_per_refresh_interval_whatever_the_scrapes(settings):
    from app.core.db import create_db_engine

    engine, clock = create_db_engine(settings), ManualClock()
    queries = counted_queries(engine)
    try:
        first = active_sessions(engine, clock)
        add_active_session(engine)
        for _ in range(7):  # scrapes inside the interval: the cached reading, no query
            clock.now += 2
            assert active_sessions(engine, clock) == first
        assert len(queries) == 1
        clock.now += 1  # 15 s after the reading: the next scrape counts again
        assert active_sessions(engine, clock) == first + 1
        assert len(queries) == 2
    finally:
        engine.dispose()


def test_a_blocked_count_skips_the_sample_within_the_statement_timeout(settings):
    import threading

    from sqlalchemy import text

    from app.core.db import create_db_engine

    engine, clock = create_db_engine(settings), ManualClock()
    before = active_sessions(engine, clock, refresh_s=0)
    assert before is not None
    holder = create_db_engine(settings)
    try:
        with holder.connect() as locked:
            locked.execute(text("LOCK TABLE chat_session IN ACCESS EXCLUSIVE MODE"))
            scraped: list = []
            scrape = threading.Thread(target=lambda: scraped.append(active_sessions(engine, clock, 0, 0.2)), daemon=True)
            scrape.start()
            scrape.join(timeout=30)  # without the statement timeout it would wait for the lock as long as it is held
            assert not scrape.is_alive() and scraped == [None]
            locked.rollback()
        assert active_sessions(engine, clock, refresh_s=0) == before  # the next refresh reads it again
    finally:
        holder.dispose()
        engine.dispose()


def test_a_full_pool_keeps_the_previous_reading_without_waiting_for_a_connection(settings):
    from app.core.db import create_db_engine

    engine = create_db_engine(settings.model_copy(update={"db_pool_size": 1, "db_pool_timeout_s": 30}))
    clock = ManualClock()
    queries = counted_queries(engine)
    try:
        before = active_sessions(engine, clock)
        clock.now += 60
        with engine.connect(), engine.connect():  # every connection the service may open is in use
            assert active_sessions(engine, clock) == before
        assert len(queries) == 1
        assert active_sessions(engine, clock) == before and len(queries) == 2  # a connection is free: counted
    finally:
        engine.dispose()


def test_postgres_down_leaves_the_gauge_out_and_is_not_retried_on_every_scrape():
    from sqlalchemy import event

    from app.core.db import create_db_engine
    from app.settings import Settings
    from tests.conftest import free_port

    down = Settings(_env_file=None, database_url=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/textbook",
                    db_connect_timeout_s=1)
    engine, clock, attempts = create_db_engine(down), ManualClock(), []
    event.listen(engine, "do_connect", lambda *_: attempts.append(1))
    try:
        assert active_sessions(engine, clock) is None  # no sample, no error: the scrape still answers
        clock.now += 5
        assert active_sessions(engine, clock) is None and len(attempts) == 1
        clock.now += 15
        assert active_sessions(engine, clock) is None and len(attempts) == 2
    finally:
        engine.dispose()
