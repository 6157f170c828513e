"""Slow clients against the real service (`python -m app serve`, loopback): a client that holds
many requests open by sending their bodies a byte at a time, or never finishing their headers, must not shut out
everyone else, and /ready must tell a load balancer when a worker is full. Bounded: at most 100 sockets, 10 s."""

from __future__ import annotations

import select
import socket
import time

import httpx
import pytest

from app.rag.vector_index.sparse_copy import copy_index_tree
from tests.support.service_process import run_service

pytestmark = pytest.mark.slow
ATTACKER, READER = "127.0.0.1", "127.0.0.2"  # two client addresses on this machine's loopback
SLOW_SOCKETS = 100
ATTACK_S = 10.0


@pytest.fixture(scope="module")
def service_index(settings, ingested_textbook, tmp_path_factory):
    copy = tmp_path_factory.mktemp("slow-clients") / "index"
    copy_index_tree(settings.resolved_index_dir, copy)
    return copy


def open_slow_body(host: str, port: int) -> socket.socket:
    """POST /v1/chat announcing 100 bytes of body and sending one."""
    sock = socket.create_connection((host, port), timeout=5, source_address=(ATTACKER, 0))
    sock.sendall(f"POST /v1/chat HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 100\r\n\r\n{{".encode())
    return sock


def answered(sock: socket.socket) -> bytes | None:
    """What the server has sent so far without waiting (b"" once it closed), or None if nothing yet."""
    if not select.select([sock], [], [], 0)[0]:
        return None
    try:
        return sock.recv(65536)
    except (ConnectionResetError, OSError):
        return b""


def status_of(answer: bytes | None) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer and answer.startswith(b"HTTP/1.1 ") else None


def test_100_slow_bodies_from_one_client_leave_every_other_client_served(settings, service_index, tmp_path):
    env = {"DATABASE_URL": settings.database_url, "INDEX_DIR": str(service_index)}
    with run_service(env, tmp_path / "api.log") as service:
        host, port = service.base.removeprefix("http://").split(":")
        sockets = [open_slow_body(host, int(port)) for _ in range(SLOW_SOCKETS)]
        answers: dict[int, bytes] = {}
        reader_statuses: list[tuple[str, int]] = []
        try:
            with httpx.Client(base_url=service.base, timeout=10,
                              transport=httpx.HTTPTransport(local_address=READER)) as reader:
                started = time.monotonic()
                last_byte = started
                while time.monotonic() - started < ATTACK_S:
                    for path, call in (("/v1/search", lambda: reader.post("/v1/search", json={"query": "ROS 2", "k": 1})),
                                       ("/ready", lambda: reader.get("/ready")), ("/docs", lambda: reader.get("/docs"))):
                        reader_statuses.append((path, call().status_code))
                    if time.monotonic() - last_byte >= 1:  # one more body byte a second from every open socket
                        last_byte = time.monotonic()
                        for index, sock in enumerate(sockets):
                            if index not in answers:
                                try:
                                    sock.sendall(b" ")
                                except OSError:
                                    answers[index] = b""
                    for index, sock in enumerate(sockets):
                        if index not in answers and (answer := answered(sock)) is not None:
                            answers[index] = answer
                    time.sleep(0.2)
        finally:
            for sock in sockets:
                sock.close()
        log_tail = service.log_tail()
    assert reader_statuses and all(status < 300 for _, status in reader_statuses), (
        [s for s in reader_statuses if s[1] >= 300][:10], log_tail)
    statuses = [status_of(a) for a in answers.values()]
    assert len(answers) == SLOW_SOCKETS, f"{SLOW_SOCKETS - len(answers)} slow requests were still held after {ATTACK_S} s"
    assert set(statuses) <= {408, 429}, statuses
    assert statuses.count(429) >= SLOW_SOCKETS - 20, "past the per-client cap the client is refused at once"
    assert statuses.count(408) >= 1, "the slow bodies inside the cap end at the body deadline"


def test_connections_without_complete_headers_are_closed_and_ready_reports_a_full_worker(
        settings, service_index, tmp_path):
    env = {"DATABASE_URL": settings.database_url, "INDEX_DIR": str(service_index), "HEADER_READ_TIMEOUT_S": "1",
           "MAX_IN_FLIGHT_REQUESTS": "3", "BODY_READ_TIMEOUT_S": "20"}
    with run_service(env, tmp_path / "api.log") as service:
        host, port = service.base.removeprefix("http://").split(":")
        silent = socket.create_connection((host, int(port)), source_address=(ATTACKER, 0))
        partial = socket.create_connection((host, int(port)), source_address=(ATTACKER, 0))
        partial.sendall(f"POST /v1/chat HTTP/1.1\r\nHost: {host}\r\nContent-Type: app".encode())
        for sock in (silent, partial):
            sock.settimeout(6)
            try:
                assert sock.recv(1024) == b"", "the connection was answered instead of closed"
            except TimeoutError:
                pytest.fail("a connection without complete headers was still open after 6 s (deadline 1 s)")
            except ConnectionResetError:
                pass
            sock.close()

        holding = [open_slow_body(host, int(port)) for _ in range(3)]  # every in-flight slot of the worker
        try:
            deadline = time.monotonic() + 10
            while (ready := httpx.get(f"{service.base}/ready", timeout=5)).status_code == 200:
                assert time.monotonic() < deadline, "the slow requests never filled the worker"
                time.sleep(0.1)
            assert ready.status_code == 503 and ready.json()["checks"]["capacity"].startswith("saturated: 3 of 3")
            assert httpx.get(f"{service.base}/health", timeout=5).status_code == 200
            with httpx.Client(base_url=service.base, transport=httpx.HTTPTransport(local_address=READER)) as reader:
                shed = reader.post("/v1/search", json={"query": "ROS 2"}, timeout=5)
            assert shed.status_code == 503 and shed.json()["error_code"] == "overloaded"
            metrics = httpx.get(f"{service.base}/metrics", timeout=5).text
        finally:
            for sock in holding:
                sock.close()
        deadline = time.monotonic() + 10
        while httpx.get(f"{service.base}/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "/ready did not recover once the slow requests were gone"
            time.sleep(0.1)
    shed_lines = [line for line in metrics.splitlines()
                  if line.startswith("rag_http_requests_total{") and 'code="503"' in line]
    assert any('route="/v1/search"' in line for line in shed_lines), shed_lines
    assert not any('route="unmatched"' in line for line in shed_lines), shed_lines
