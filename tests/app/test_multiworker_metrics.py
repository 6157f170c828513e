"""Several uvicorn workers: /metrics aggregates every worker's counters (tests/app/test_multiworker_embedded.py runs
them on the embedded index)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import free_port
from tests.support.service_process import run_service

pytestmark = pytest.mark.slow


def test_counters_from_all_workers_are_summed_at_scrape_time(settings, tmp_path):
    dead_qdrant = f"http://127.0.0.1:{free_port()}"  # nothing listens: every chat is a 503 index_unavailable
    env = {"DATABASE_URL": settings.database_url, "VECTOR_BACKEND": "qdrant", "QDRANT_URL": dead_qdrant,
           "DATA_DIR": str(tmp_path), "API_WORKERS": "2"}
    with run_service(env, ready_path="/health", timeout_s=120) as service:
        base = service.base
        requests = 0
        pids: set[str] = set()
        while len(pids) < 2 and requests < 300:  # new connections until both workers have served some
            with httpx.Client(base_url=base, timeout=30) as client:
                response = client.post("/v1/chat", json={"question": "What is ROS 2?"})
            requests += 1
            assert response.status_code == 503 and response.json()["error_code"] == "index_unavailable"
            pids = {re.search(r"_(\d+)\.db$", p.name).group(1) for p in (tmp_path / "metrics").glob("counter_*.db")}
        assert len(pids) == 2, f"{requests} requests were all served by one worker"
        for _ in range(4):  # whichever worker answers the scrape, it reports the sum
            with httpx.Client(base_url=base, timeout=30) as client:
                text = client.get("/metrics").text
            match = re.search(r'^rag_query_errors_total\{error_code="index_unavailable"\} (\S+)$', text, re.M)
            assert match and float(match.group(1)) == requests

