"""Two uvicorn workers on the embedded index (Qdrant Edge), real processes, real Postgres: both answer, both follow
a generation published while they run, the rate limit holds across them, and no reader copy outlives the service."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from flows.ingest_textbook import ingest_textbook
from tests.support.service_process import failing_service, run_service
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

COLLECTION = "workers"
RATE_LIMIT = 30  # under 40 a window: counted request by request (no leases), so the 31st is refused exactly
CHAPTERS = {
    "balance.md": "---\ntitle: Balance\n---\n\n## Support polygon\n\nThe support polygon is the convex hull of the feet "
                  "touching the ground. A robot standing still is stable while its centre of mass projects inside it.\n",
    "sensors.md": "---\ntitle: Sensors\n---\n\n## Inertial measurement\n\nAn IMU combines an accelerometer and a "
                  "gyroscope to estimate orientation and angular velocity of the torso.\n",
}
NEW_CHAPTER = ("---\ntitle: Gaits\n---\n\n## The zorblax gait\n\nThe zorblax gait lifts three legs at once and "
               "keeps the other three on the ground, so the hexapod never loses its support.\n")


def requests_by_worker(metrics_dir: Path, routes: str = "/v1/") -> Counter[int]:
    """Requests (to routes starting with `routes`) each worker has answered so far, from its own multiprocess metrics
    file (counter_<pid>.db)."""
    served: Counter[int] = Counter()
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, _ in MmapedDict(str(path), read_mode=True).read_all_values():
            _, sample, labels, *_ = json.loads(key)
            if sample == "rag_http_requests_total" and labels.get("route", "").startswith(routes):
                served[pid] += value
    return served


def reader_copies(index_dir: Path) -> list[str]:
    """<pid>-<generation> of every private copy the readers hold."""
    return sorted(p.name for p in index_dir.glob("*/readers/*"))


def child_pids(supervisor: int) -> set[int]:
    """The uvicorn workers (and multiprocessing's resource tracker)."""
    return {int(pid) for pid in Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()}


def post(base: str, path: str, payload: dict, address: str) -> httpx.Response:
    """On a new connection (the kernel hands each to either worker), from a loopback `address` of its own."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=base, transport=transport, timeout=30) as client:
        return client.post(path, json=payload)


def search_texts(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return " ".join(result["text"] for result in response.json()["results"])


def test_two_workers_answer_from_the_embedded_index_and_follow_a_new_generation(settings, settings_env, tmp_path):
    index_dir = tmp_path / "index"
    tree = tmp_path / "book"
    tree.mkdir()
    for name, text in CHAPTERS.items():
        (tree / name).write_text(text)
    settings_env({"INDEX_DIR": str(index_dir)})  # the flow in this process writes where the service reads
    first = ingest_textbook(source=str(tree), collection=COLLECTION)
    assert first["status"] == "completed"
    env = {"DATABASE_URL": settings.database_url, "INDEX_DIR": str(index_dir), "COLLECTION": COLLECTION,
           "DATA_DIR": str(tmp_path / "data"), "API_WORKERS": "2", "RATE_LIMIT_ANONYMOUS": str(RATE_LIMIT)}
    metrics_dir = tmp_path / "data" / "metrics"
    with run_service(env, tmp_path / "api.log") as service:
        # Both workers answer chat and search from the index (each from its own copy of the first generation).
        for i in range(40):
            address = f"127.0.1.{i + 1}"  # each its own rate-limit budget
            answer = post(service.base, "/v1/chat", {"question": "What is the support polygon?"}, address)
            assert answer.status_code == 200 and "convex hull" in answer.json()["answer"], answer.text
            assert "gyroscope" in search_texts(post(service.base, "/v1/search", {"query": "IMU gyroscope", "k": 3},
                                                    address))
            if len(requests_by_worker(metrics_dir)) == 2:
                break
        workers = set(requests_by_worker(metrics_dir))
        assert len(workers) == 2, "every request went to one worker"
        assert workers <= child_pids(service.pid)
        assert reader_copies(index_dir) == sorted(f"{pid}-{first['generation']}" for pid in workers)

        # An ingest publishes a new generation while both workers have the first one open.
        (tree / "gaits.md").write_text(NEW_CHAPTER)
        second = ingest_textbook(source=str(tree), collection=COLLECTION)
        assert second["status"] == "completed" and second["generation"] != first["generation"]
        before = requests_by_worker(metrics_dir)
        for i in range(40):
            found = search_texts(post(service.base, "/v1/search", {"query": "zorblax gait hexapod", "k": 3},
                                      f"127.0.2.{i + 1}"))
            assert "zorblax" in found  # whichever worker answered, it answered from the new generation
            served_since = requests_by_worker(metrics_dir) - before
            if set(served_since) == workers:
                break
        assert set(served_since) == workers, f"after the publish only {served_since} answered"
        now_open = [name for name in reader_copies(index_dir) if name.endswith(second["generation"])]
        assert sorted(now_open) == sorted(f"{pid}-{second['generation']}" for pid in workers)

        # The rate limit is one budget across both workers: new connections from one address, spread over them.
        before = requests_by_worker(metrics_dir)
        statuses = [post(service.base, "/v1/search", {"query": "support polygon", "k": 1}, "127.0.0.4").status_code
                    for _ in range(RATE_LIMIT + 1)]
        assert statuses == [200] * RATE_LIMIT + [429]
        assert set(requests_by_worker(metrics_dir) - before) == workers

    assert service.process.returncode == 0
    assert reader_copies(index_dir) == []  # each worker removed its copies when it stopped


def test_keep_alive_connections_opened_at_once_spread_over_the_workers(settings, tmp_path):
    """One client opening its connections in a burst (a proxy, a load generator) is served by both workers: each
    worker listens on its own socket (app/worker_sockets.py). With one shared socket the first worker to wake took
    all of them. 16 connections: all on one worker by chance once in 2**15 runs."""

    async def burst(base: str) -> None:
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
            answers = await asyncio.gather(*(client.post("/v1/chat", json={"question": "What is ROS 2?"})
                                             for _ in range(16)))
        assert {answer.status_code for answer in answers} == {503}  # index_unavailable: quick and counted

    metrics_dir = tmp_path / "data" / "metrics"
    with failing_service(settings.database_url, tmp_path / "data", API_WORKERS="2",
                         RATE_LIMIT_ANONYMOUS="1000") as service:
        def both_workers_listen() -> bool:  # a worker still starting has no listening socket: all go to the other
            httpx.get(f"{service.base}/health", timeout=10)  # a new connection each time
            return len(requests_by_worker(metrics_dir, routes="/health")) == 2

        wait_until(both_workers_listen, timeout_s=60, what="both workers answering /health", poll_s=0.05)
        asyncio.run(burst(service.base))
        served = requests_by_worker(metrics_dir)
    assert len(served) == 2 and sum(served.values()) == 16, served
