"""Prometheus metrics. With METRICS_MULTIPROC_DIR set (several uvicorn workers), prometheus_client's
multiprocess mode aggregates every worker's values at scrape time.

The alert rules in deployments/prometheus/rules/ are written against these names: the latency SLOs count
requests under a threshold, so the histograms carry buckets at exactly 6 s (end to end), 500 ms
(retrieval) and 5000 ms (generation). Process, pool and disk gauges are explicit (`service_*`) because
prometheus_client's own process collector does not work in multiprocess mode.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

MS_BUCKETS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)

QUERY_DURATION = Histogram(
    "rag_query_duration_seconds", "End-to-end duration of a query request", ["endpoint", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 6, 8, 10, 30),
)
QUERY_ERRORS = Counter("rag_query_errors_total", "Failed queries by error code", ["error_code"])
TOKENS_USED = Counter("rag_tokens_used_total", "Tokens used", ["kind", "model"])
VECTOR_SEARCH_LATENCY = Histogram("rag_vector_search_latency_ms", "Vector index search latency (ms)", buckets=MS_BUCKETS)
RETRIEVAL_LATENCY = Histogram(
    "rag_retrieval_latency_ms", "Retrieval latency: query embedding plus vector search (ms)", buckets=MS_BUCKETS
)
EMBEDDING_LATENCY = Histogram("rag_query_embedding_latency_ms", "Query embedding latency (ms)", buckets=MS_BUCKETS)
EMBEDDING_BATCH_QUERIES = Histogram(
    "rag_query_embedding_batch_queries", "Queries that shared one encode call (app/rag/batcher.py)",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
)
GENERATION_LATENCY = Histogram(
    "rag_llm_generation_latency_ms", "Answer generation latency (ms)", ["backend"], buckets=MS_BUCKETS
)
DB_LATENCY = Histogram("rag_db_write_latency_ms", "Time spent writing a query's rows to Postgres (ms)",
                       buckets=MS_BUCKETS)
ANSWERS = Counter("rag_answers_total", "Answers by backend and coverage", ["backend", "covered"])
CITATION_FAILURES = Counter(
    "rag_citation_failures_total",
    "Citation problems repaired in answers: phantom, miscited, uncited, unsupported, renumbered, unused, "
    "no_supported_claim", ["kind"],
)


def observe_retrieval(retrieval: Any) -> None:
    """A retrieval's embedding, vector search and their sum (the retrieval latency SLO's histogram)."""
    EMBEDDING_LATENCY.observe(retrieval.embed_ms)
    VECTOR_SEARCH_LATENCY.observe(retrieval.search_ms)
    RETRIEVAL_LATENCY.observe(retrieval.embed_ms + retrieval.search_ms)


HTTP_REQUESTS = Counter(
    "rag_http_requests_total", "HTTP requests by route template, method and status code", ["route", "method", "code"]
)
# livesum: in multiprocess mode the sum over the live workers, each adding its own pool.
DB_POOL_IN_USE = Gauge("service_db_pool_connections_in_use", "Database connections checked out of the pool",
                       multiprocess_mode="livesum")
DB_POOL_CAPACITY = Gauge("service_db_pool_connections_max", "Connections the pool may open (size + overflow)",
                         multiprocess_mode="livesum")


_instrumented_engines: list[Any] = []  # usually one per worker; tests build several apps in one process


def _pool_capacity(engine: Any) -> int:
    return engine.pool.size() + max(getattr(engine.pool, "_max_overflow", 0), 0)


def _update_pool_gauges(*_: Any, returning: int = 0) -> None:
    # Read from the pools themselves (not +1/-1 per event): invalidations, disposals and reconnects can't skew it.
    in_use = sum(max(engine.pool.checkedout(), 0) for engine in _instrumented_engines) - returning
    DB_POOL_IN_USE.set(max(in_use, 0))
    DB_POOL_CAPACITY.set(sum(_pool_capacity(engine) for engine in _instrumented_engines))


def _connection_returning(*_: Any) -> None:
    _update_pool_gauges(returning=1)  # "checkin" fires before the pool counts the connection as returned


def instrument_pool(engine: Any) -> None:
    """Export checked-out connections and capacity of the service's engine (every worker adds its own pool)."""
    from sqlalchemy import event

    _instrumented_engines.append(engine)
    event.listen(engine.pool, "checkout", _update_pool_gauges)
    event.listen(engine.pool, "checkin", _connection_returning)
    _update_pool_gauges()


def release_pool(engine: Any) -> None:
    if engine in _instrumented_engines:
        _instrumented_engines.remove(engine)
    _update_pool_gauges()


@dataclass
class _SessionCount:
    value: float | None = None
    read_at: float = -math.inf
    lock: threading.Lock = field(default_factory=threading.Lock)


# One reading per engine (each worker has its own): render_metrics builds a new collector for every scrape.
_session_counts: WeakKeyDictionary[Any, _SessionCount] = WeakKeyDictionary()
_session_counts_lock = threading.Lock()


class ActiveSessionsCollector:
    """rag_active_sessions, read from Postgres so every worker agrees, at most once per `refresh_s`.

    A COUNT on every scrape would add load during a latency incident and could hang the scrape itself: between
    refreshes the last reading is served; a refresh runs under a `timeout_s` statement timeout and never waits for
    a connection when the service's pool is full (the previous value stays). Postgres down or the count timing out:
    no sample until a later refresh succeeds (a scrape must not fail because Postgres is down).
    """

    def __init__(self, engine: Any, window_s: int, refresh_s: float = 15.0, timeout_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._window_s = window_s
        self._refresh_s = refresh_s
        self._timeout_ms = max(1, int(timeout_s * 1000))
        self._clock = clock

    def collect(self) -> Iterator[Any]:
        with _session_counts_lock:  # concurrent scrapes share one reading
            reading = _session_counts.setdefault(self._engine, _SessionCount())
        with reading.lock:
            now = self._clock()
            if now - reading.read_at >= self._refresh_s and not self._pool_full():
                reading.value, reading.read_at = self._count(), now
            value = reading.value
        if value is not None:
            yield GaugeMetricFamily("rag_active_sessions", "Chat sessions active in the last 30 minutes", value=value)

    def _pool_full(self) -> bool:
        pool = self._engine.pool
        return hasattr(pool, "size") and pool.checkedout() >= _pool_capacity(self._engine)

    def _count(self) -> float | None:
        from sqlalchemy import func, select
        from sqlalchemy import text as sql

        from app.core.models import ChatSession

        since = datetime.now(UTC) - timedelta(seconds=self._window_s)
        try:
            with self._engine.connect() as conn:
                conn.execute(sql("SELECT set_config('statement_timeout', :ms, true)"), {"ms": str(self._timeout_ms)})
                return float(conn.execute(
                    select(func.count()).select_from(ChatSession).where(ChatSession.last_active_at >= since)
                ).scalar_one())
        except Exception:  # noqa: BLE001 - a scrape must not fail because Postgres is down or slow
            return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _read_first(paths: Iterable[str]) -> str | None:
    for path in paths:
        try:
            return Path(path).read_text().strip()
        except OSError:
            continue
    return None


@lru_cache(maxsize=1)
def memory_limit_bytes() -> float:
    """The cgroup's memory limit (v2, then v1), or the machine's memory when there is none."""
    total = float(os.sysconf("SC_PHYS_PAGES") * _PAGE_SIZE)
    raw = _read_first(["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
    if raw and raw.isdigit():
        return min(total, float(raw))
    return total


@lru_cache(maxsize=1)
def cpu_limit_cores() -> float:
    """The cgroup's CPU quota in cores (v2, then v1), or the CPUs this process may run on."""
    cores = float(len(os.sched_getaffinity(0)))
    raw = _read_first(["/sys/fs/cgroup/cpu.max"])
    if raw and not raw.startswith("max"):
        quota, period = raw.split()[:2]
        return min(cores, int(quota) / int(period))
    quota_v1 = _read_first(["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"])
    period_v1 = _read_first(["/sys/fs/cgroup/cpu/cpu.cfs_period_us"])
    if quota_v1 and period_v1 and quota_v1.lstrip("-").isdigit() and int(quota_v1) > 0:
        return min(cores, int(quota_v1) / int(period_v1))
    return cores


def _process_usage(pid: int) -> tuple[float, float] | None:
    """(CPU seconds, resident bytes) of one process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the command: state is field 3, so utime (14) and stime (15) sit at 11 and 12, rss (24) at 21
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, float(int(fields[21]) * _PAGE_SIZE)


def service_pids(multiproc_dir: Path | None) -> list[int]:
    """This process, plus in multiprocess mode every live worker that wrote metric files."""
    pids = {os.getpid()}
    if multiproc_dir is not None:
        for path in multiproc_dir.glob("*.db"):
            match = re.search(r"_(\d+)\.db$", path.name)
            if match and Path(f"/proc/{match.group(1)}").exists():
                pids.add(int(match.group(1)))
    return sorted(pids)


class ServiceResourcesCollector:
    """CPU, memory and disk of the service, read at scrape time (a few small /proc and statvfs reads)."""

    def __init__(self, multiproc_dir: Path | None, data_folders: dict[str, Path]) -> None:
        self._multiproc_dir = multiproc_dir
        self._data_folders = data_folders

    def collect(self) -> Iterator[Any]:
        usages = [u for u in map(_process_usage, service_pids(self._multiproc_dir)) if u is not None]
        cpu = CounterMetricFamily("service_process_cpu_seconds", "CPU time of the service's processes")
        cpu.add_metric([], sum(u[0] for u in usages))
        memory = GaugeMetricFamily("service_process_resident_memory_bytes", "Resident memory of the service's processes")
        memory.add_metric([], sum(u[1] for u in usages))
        processes = GaugeMetricFamily("service_processes", "Processes counted in the service_process_* metrics")
        processes.add_metric([], float(len(usages)))
        yield from (cpu, memory, processes)
        yield GaugeMetricFamily("service_memory_limit_bytes", "Memory the service may use (cgroup limit or machine)",
                                value=memory_limit_bytes())
        yield GaugeMetricFamily("service_cpu_limit_cores", "CPU cores the service may use (cgroup quota or affinity)",
                                value=cpu_limit_cores())
        used = GaugeMetricFamily("service_disk_used_bytes", "Used bytes of the filesystem holding a data folder",
                                 labels=["folder"])
        size = GaugeMetricFamily("service_disk_size_bytes", "Size of the filesystem holding a data folder",
                                 labels=["folder"])
        for name, folder in self._data_folders.items():
            try:
                usage = shutil.disk_usage(_existing_parent(folder))
            except OSError:
                continue
            used.add_metric([name], float(usage.total - usage.free))
            size.add_metric([name], float(usage.total))
        yield from (used, size)


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def render_metrics(engine: Any, window_s: int, multiprocess: bool, multiproc_dir: Path | None = None,
                   data_folders: dict[str, Path] | None = None, sessions_refresh_s: float = 15.0,
                   sessions_timeout_s: float = 1.0) -> tuple[bytes, str]:
    if multiprocess:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    scraped = CollectorRegistry()
    scraped.register(ActiveSessionsCollector(engine, window_s, sessions_refresh_s, sessions_timeout_s))
    scraped.register(ServiceResourcesCollector(multiproc_dir if multiprocess else None, data_folders or {}))
    return generate_latest(registry) + generate_latest(scraped), CONTENT_TYPE_LATEST
