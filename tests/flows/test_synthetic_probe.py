"""synthetic-probe and probe-availability-report under Prefect's harness, against the real service over HTTP
(uvicorn serving the session's app) and a real Pushgateway."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import uvicorn
from prefect.artifacts import Artifact
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app.core.db import session_scope
from app.core.models import ProbeResult
from tests.conftest import free_port
from tests.support.artifacts import latest_artifact
from tests.support.waiting import wait_for_http, wait_until


@pytest.fixture(scope="module")
def service_url(client) -> Iterator[str]:
    """The session's app (already started by the TestClient, which holds the index) served over real HTTP."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout_s=20, what="uvicorn to start", poll_s=0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def pushgateway(settings_env) -> Iterator[str]:
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is missing: run devenv/install-system-packages.sh")
    port = free_port()
    process = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/-/ready", timeout_s=20, process=process, what="the pushgateway")
    settings_env({"PUSHGATEWAY_URL": url})
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        settings_env({"PUSHGATEWAY_URL": None})


def pushed(url: str) -> dict[tuple[str, frozenset], float]:
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text)
    return {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}


def rows_for(settings, round_id: str) -> dict[str, ProbeResult]:
    with session_scope_for(settings) as db:
        rows = db.query(ProbeResult).filter(ProbeResult.round_id == uuid.UUID(round_id)).all()
    return {row.check_name: row for row in rows}


def session_scope_for(settings):
    from tasks.databases import engine_for

    return session_scope(engine_for(settings))


def test_probe_passes_against_the_running_service_and_pushes_its_metrics(settings, prefect_harness, service_url,
                                                                        pushgateway):
    from flows.synthetic_probe import synthetic_probe

    result = synthetic_probe(base_url=service_url)
    assert result["checks"] == {"health": True, "ready": True, "canary": True}
    rows = rows_for(settings, result["round_id"])
    assert set(rows) == {"health", "ready", "canary"} and all(r.success for r in rows.values())
    assert "/docs/kinematics-and-locomotion" in rows["canary"].detail and rows["canary"].status_code == 200
    metrics = pushed(pushgateway)
    for check in ("health", "ready", "canary"):
        labels = frozenset({"job": "synthetic_probe", "check": check, "instance": ""}.items())
        assert metrics[("probe_success", labels)] == 1.0
        assert metrics[("probe_duration_seconds", labels)] > 0
    last_run = metrics[("probe_last_run_timestamp_seconds", frozenset({"job": "synthetic_probe", "instance": ""}.items()))]
    assert abs(last_run - time.time()) < 120
    # the operations facts the alert rules read: the session's ingest, and the budget
    ingests = {dict(labels)["collection"]: v for (name, labels), v in metrics.items() if name == "ingest_last_run_success"}
    assert ingests.get(settings.collection_name()) == 1.0
    assert metrics[("cost_usd_monthly_budget", frozenset({"job": "cost_report", "instance": ""}.items()))] == \
        settings.cost_monthly_budget_usd


def test_probe_of_a_dead_service_records_the_failures_and_fails_the_run(settings, prefect_harness, pushgateway):
    from flows.synthetic_probe import ProbeFailed, synthetic_probe

    dead = f"http://127.0.0.1:{free_port()}"
    state = synthetic_probe(base_url=dead, return_state=True)
    assert state.is_failed()
    with pytest.raises(ProbeFailed, match="health, ready, canary failed"):
        state.result()
    with session_scope_for(settings) as db:
        round_id = db.execute(text("SELECT DISTINCT round_id FROM probe_result WHERE base_url = :u"), {"u": dead}).scalar_one()
    rows = rows_for(settings, str(round_id))
    assert not any(r.success for r in rows.values()) and rows["health"].status_code is None
    metrics = pushed(pushgateway)
    assert metrics[("probe_success", frozenset({"job": "synthetic_probe", "check": "canary", "instance": ""}.items()))] == 0
    artifact = Artifact.get("synthetic-probe")  # what the run's Artifacts tab shows
    assert [(c["check"], c["result"]) for c in json.loads(artifact.data)] == [
        ("health", "FAILED"), ("ready", "FAILED"), ("canary", "FAILED")]
    assert dead in artifact.description and "runbooks/service-down.md" in artifact.description


def test_canary_fails_when_the_expected_page_is_not_cited(settings, prefect_harness, service_url):
    from flows.synthetic_probe import ProbeFailed, synthetic_probe

    state = synthetic_probe(base_url=service_url, expected_source="/docs/no-such-chapter", return_state=True)
    assert state.is_failed()
    with pytest.raises(ProbeFailed, match="canary failed"):
        state.result()


def test_availability_report_over_1_7_and_30_days(settings, prefect_harness):
    from flows.synthetic_probe import probe_availability_report

    as_of = datetime(2031, 3, 31, 12, tzinfo=UTC)  # in the future: only this test's rows are in its windows

    def add_round(at: datetime, ok: bool) -> None:
        round_id = uuid.uuid4()
        with session_scope_for(settings) as db:
            for check in ("health", "ready", "canary"):
                db.add(ProbeResult(round_id=round_id, base_url="http://probe.test", check_name=check,
                                   success=ok or check != "canary", seconds=0.1, checked_at=at))

    for hour in range(20):  # last day: 20 rounds, 1 failed
        add_round(as_of - timedelta(hours=hour, minutes=5), ok=hour != 3)
    for day in range(2, 7):  # the rest of the week: 5 good rounds
        add_round(as_of - timedelta(days=day), ok=True)
    for day in range(10, 30, 5):  # the rest of the month: 4 rounds, 2 failed
        add_round(as_of - timedelta(days=day), ok=day % 10 != 0)
    add_round(as_of - timedelta(days=45), ok=False)  # outside every window

    report = probe_availability_report(as_of=as_of)
    assert report["1d"] == {"rounds": 20, "successful": 19, "availability": 0.95, "meets_slo": False}
    assert report["7d"]["rounds"] == 25 and report["7d"]["successful"] == 24
    assert report["30d"]["rounds"] == 29 and report["30d"]["successful"] == 26
    artifact = latest_artifact("probe-availability")
    assert "MISSED" in str(artifact.data) and "99.5%" in str(artifact.data)
