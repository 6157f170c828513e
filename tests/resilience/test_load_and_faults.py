"""The real service (`python -m app serve`, loopback) under load and faults.

Also covered elsewhere, not repeated here: the LLM backend failing or timing out -> the extractive fallback
answers (tests/app/test_openai_backends.py::test_llm_failure_or_timeout_falls_back_to_the_extractive_answer), and
the vector index unavailable -> 503 naming it (tests/app/test_outages.py::test_missing_index_gives_503_naming_the_
vector_index, and /ready naming `vector_index`).
"""

from __future__ import annotations

import select
import signal
import socket
import threading
import time

import httpx
import pytest

from app.core.db import migrate
from app.rag.vector_index.sparse_copy import copy_index_tree
from bench import load_with_restart
from tests.conftest import APP_PASSWORD, database_url, start_cluster
from tests.support.openai_server import FakeOpenAI
from tests.support.service_process import run_service

pytestmark = pytest.mark.slow
TEN_MB = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def service_index(settings, ingested_textbook, tmp_path_factory):
    """A copy of the session's index: the embedded index opens in one process, and this process may hold it."""
    copy = tmp_path_factory.mktemp("service") / "index"
    copy_index_tree(settings.resolved_index_dir, copy)
    return copy


def test_steady_load_while_postgres_crashes_and_restarts(service_index, tmp_path):
    cluster = start_cluster("postgres-load", durable=True)  # crashed on purpose: it must keep its commits
    try:
        cluster.ensure_database(dbname="textbook", app_user="textbook_app", app_password=APP_PASSWORD)
        url = database_url(cluster, "textbook")
        migrate(url)
        env = {"DATABASE_URL": url, "INDEX_DIR": str(service_index), **load_with_restart.ONE_ADDRESS_MANY_READERS}
        with run_service(env, tmp_path / "api.log") as service:
            report = load_with_restart.run(service.base, url, lambda: cluster.stop(mode="immediate"), cluster.start)
    finally:
        cluster.stop(mode="immediate")
    print(report.summary())
    assert len(report.outcomes) == 3000
    assert report.failures, "the restart was not noticed"
    assert not report.bad_failures, [(o.endpoint, o.status, o.error) for o in report.bad_failures[:5]]
    assert not report.missing_query_log, f"2xx answers without a query_log row: {report.missing_query_log[:5]}"
    assert report.recovery_s <= 10, report.summary()


def _send_until_answered(sock: socket.socket, head: bytes, chunks) -> bytes:
    """Send the head, then body chunks until the server answers; return what it answered."""
    sock.sendall(head)
    for chunk in chunks:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.settimeout(10)
    answer = b""
    while b"\r\n\r\n" not in answer:
        part = sock.recv(65536)
        if not part:
            break
        answer += part
    return answer


def test_a_10_mb_body_is_refused_early_without_the_worker_growing(settings, service_index, tmp_path):
    env = {"DATABASE_URL": settings.database_url, "INDEX_DIR": str(service_index)}
    with run_service(env, tmp_path / "api.log") as service:
        host, port = service.base.removeprefix("http://").split(":")
        for _ in range(3):  # warm: the allocator's steady state
            assert httpx.post(f"{service.base}/v1/search", json={"query": "ROS 2"}).status_code == 200
        before = service.rss_kib()
        for framing in ["content-length", "chunked"] * 3:
            head = (f"POST /v1/chat HTTP/1.1\r\nHost: {host}\r\ncontent-type: application/json\r\n"
                    + (f"content-length: {TEN_MB}\r\n" if framing == "content-length" else "transfer-encoding: chunked\r\n")
                    + "\r\n").encode()
            piece = b"x" * 65536
            chunks = [piece] * (TEN_MB // len(piece)) if framing == "content-length" else \
                [b"10000\r\n" + piece + b"\r\n"] * (TEN_MB // len(piece))
            sent_at = time.perf_counter()
            with socket.create_connection((host, int(port))) as sock:
                answer = _send_until_answered(sock, head, chunks)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert time.perf_counter() - sent_at < 5
        growth_kib = service.rss_kib() - before
        assert httpx.get(f"{service.base}/health").status_code == 200
    print(f"worker VmRSS before {before} KiB, growth after six 10 MB bodies: {growth_kib} KiB")
    assert growth_kib < 5 * 1024


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(settings, service_index, tmp_path):
    fake = FakeOpenAI().start()
    fake.mode, fake.slow_seconds = "slow", 3
    env = {"DATABASE_URL": settings.database_url, "INDEX_DIR": str(service_index), "ANSWER_BACKEND": "openai",
           "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake.base_url, "OPENAI_TIMEOUT_S": "20",
           "OPENAI_MAX_RETRIES": "0"}
    answers: list[httpx.Response] = []
    try:
        with run_service(env, tmp_path / "api.log") as service:
            asking = threading.Thread(target=lambda: answers.append(httpx.post(
                f"{service.base}/v1/chat", json={"question": "What does a Kalman filter predict?"}, timeout=30)))
            asking.start()
            deadline = time.monotonic() + 20
            while not any(r["path"] == "/v1/chat/completions" for r in fake.requests):  # the answer is being written
                assert time.monotonic() < deadline and asking.is_alive()
                time.sleep(0.05)
            service.process.send_signal(signal.SIGTERM)
            asking.join(timeout=30)
            exit_code = service.process.wait(timeout=30)
            log_tail = service.log_tail()
    finally:
        fake.stop()
    assert answers and answers[0].status_code == 200, log_tail
    assert answers[0].json()["answer_backend"] == "openai"  # the slow answer itself, not a fallback
    assert exit_code == 0, log_tail
