"""Synthetic probe tasks: check the service as a reader would, record the results, compute availability."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import httpx
from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import text

from app.core.db import session_scope
from app.core.models import ProbeResult
from app.settings import Settings
from tasks.databases import engine_for

AVAILABILITY_WINDOWS = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
AVAILABILITY_SLO = 0.995


@dataclass
class CheckResult:
    check_name: str
    success: bool
    status_code: int | None
    seconds: float
    detail: str


def _get(client: httpx.Client, check_name: str, path: str) -> CheckResult:
    started = time.perf_counter()
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        return CheckResult(check_name, False, None, time.perf_counter() - started, f"{exc.__class__.__name__}: {exc}")
    ok = response.status_code == 200
    detail = "ok" if ok else f"HTTP {response.status_code}: {response.text[:300]}"
    return CheckResult(check_name, ok, response.status_code, time.perf_counter() - started, detail)


def _client(settings: Settings, base_url: str) -> httpx.Client:
    headers = {"user-agent": "textbook-ops-synthetic-probe"}
    if settings.probe_api_key is not None:
        headers["x-api-key"] = settings.probe_api_key.get_secret_value()
    return httpx.Client(base_url=base_url, timeout=settings.probe_timeout_s, headers=headers)


@task(name="probe-health-and-ready", cache_policy=NO_CACHE)
def probe_health_and_ready(settings: Settings, base_url: str) -> list[CheckResult]:
    """GET /health (the process answers) and GET /ready (Postgres and the index answer)."""
    with _client(settings, base_url) as client:
        return [_get(client, "health", "/health"), _get(client, "ready", "/ready")]


# The one canary, for the probe and for the deploy's smoke test: a question only one page answers (the Zero Moment
# Point is defined in the locomotion chapter alone), so a citation of any other page is a real regression. A
# broad question such as "What is a ROS 2 action?" is answered by several chapters, and which one is cited
# first shifts with ranking changes that break nothing.
CANARY_QUESTION = "What is the Zero Moment Point and why does it matter for walking?"
CANARY_EXPECTED_SOURCE = "/docs/kinematics-and-locomotion"


def ask_canary(client: httpx.Client, question: str, expected_source: str) -> CheckResult:
    """Ask a question whose answer the book covers: a pass is 200, `covered`, and a cited source under the
    expected page."""
    started = time.perf_counter()
    try:
        response = client.post("/v1/chat", json={"question": question})
    except httpx.HTTPError as exc:
        return CheckResult("canary", False, None, time.perf_counter() - started, f"{exc.__class__.__name__}: {exc}")
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        return CheckResult("canary", False, response.status_code, seconds,
                           f"HTTP {response.status_code}: {response.text[:300]}")
    body = response.json()
    urls = [source.get("url", "") for source in body.get("sources", [])]
    if not body.get("covered") or not any(expected_source in url for url in urls):
        return CheckResult("canary", False, 200, seconds,
                           f"expected a source under {expected_source}, got covered={body.get('covered')} {urls[:5]}")
    return CheckResult("canary", True, 200, seconds, f"cited {next(u for u in urls if expected_source in u)}")


@task(name="probe-canary-question", cache_policy=NO_CACHE)
def probe_canary(settings: Settings, base_url: str, question: str, expected_source: str) -> CheckResult:
    """Ask the canary question and check that a cited source is the expected page."""
    with _client(settings, base_url) as client:
        return ask_canary(client, question, expected_source)


@task(name="record-probe-results", cache_policy=NO_CACHE)
def record_probe_results(settings: Settings, results: list[CheckResult], base_url: str,
                         flow_run_id: str | None) -> str:
    """One `probe_result` row per check, sharing the round's id. Returns the round id."""
    round_id = uuid.uuid4()
    now = datetime.now(UTC)
    with session_scope(engine_for(settings)) as db:
        for result in results:
            db.add(ProbeResult(round_id=round_id, flow_run_id=uuid.UUID(flow_run_id) if flow_run_id else None,
                               base_url=base_url, checked_at=now, **asdict(result)))
    return str(round_id)


@dataclass
class WindowAvailability:
    window: str
    rounds: int
    successful: int

    @property
    def availability(self) -> float | None:
        return self.successful / self.rounds if self.rounds else None

    @property
    def meets_slo(self) -> bool | None:
        return None if self.availability is None else self.availability >= AVAILABILITY_SLO


@task(name="probe-availability", cache_policy=NO_CACHE)
def probe_availability(settings: Settings, as_of: datetime) -> list[WindowAvailability]:
    """Share of probe rounds whose every check passed, over the last 1, 7 and 30 days before `as_of`."""
    columns = ", ".join(
        f"count(*) FILTER (WHERE at > :since_{name}) AS rounds_{name}, "
        f"count(*) FILTER (WHERE at > :since_{name} AND ok) AS ok_{name}" for name in AVAILABILITY_WINDOWS
    )
    params = {f"since_{name}": as_of - span for name, span in AVAILABILITY_WINDOWS.items()}
    query = text(
        "WITH rounds AS (SELECT round_id, min(checked_at) AS at, bool_and(success) AS ok FROM probe_result "
        # nosec B608: the only f-string parts are columns from the constant AVAILABILITY_WINDOWS; values are bound
        f"WHERE checked_at > :oldest AND checked_at <= :as_of GROUP BY round_id) SELECT {columns} FROM rounds"
    )
    with engine_for(settings).connect() as conn:
        row = conn.execute(query, {**params, "oldest": min(params.values()), "as_of": as_of}).mappings().one()
    return [WindowAvailability(name, row[f"rounds_{name}"], row[f"ok_{name}"]) for name in AVAILABILITY_WINDOWS]


@dataclass
class OperationsFacts:
    """The newest rotation per secret and ingest per collection, from their audit tables."""

    rotations: list[dict]
    ingests: list[dict]


@task(name="read-operations-facts", cache_policy=NO_CACHE)
def read_operations_facts(settings: Settings) -> OperationsFacts:
    """Read every rotation flow's and every ingest's outcome from Postgres, however it was run."""
    rotations = text(
        "SELECT secret_name AS name, (array_agg(status ORDER BY started_at DESC) "
        "FILTER (WHERE status <> 'started'))[1] AS last_status, "
        "max(finished_at) FILTER (WHERE status = 'completed') AS last_success FROM secret_rotation GROUP BY secret_name"
    )
    ingests = text(
        "SELECT collection AS name, (array_agg(status ORDER BY started_at DESC))[1] AS last_status, "
        "max(finished_at) FILTER (WHERE status IN ('completed', 'unchanged')) AS last_success "
        "FROM ingest_run GROUP BY collection"
    )
    with engine_for(settings).connect() as conn:
        return OperationsFacts(
            rotations=[dict(r) for r in conn.execute(rotations).mappings()],
            ingests=[dict(r) for r in conn.execute(ingests).mappings()],
        )
