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

from app.metrics import service_pids


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

    from app.db import create_db_engine
    from app.metrics import instrument_pool, release_pool

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
