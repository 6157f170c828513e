"""End to end: the real service scraped by a real Prometheus with the project's rules, alerts routed by a real
Alertmanager with the project's routing tree to a local webhook receiver, and the Grafana dashboard's queries
run against that Prometheus.

Only the timings differ from what ships: 1 s scrape and evaluation intervals, `for:` shortened to 2 s in
the rendered copy of the rules (promtool's unit tests check the shipped durations), and each Alertmanager
receiver replaced by a webhook to this test. The service is driven into 5xx errors by pointing it at a
Qdrant server that does not exist (every chat answers 503 index_unavailable).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from app.settings import PROJECT_ROOT
from devenv.monitoring import ALERTMANAGER_CONFIG, MonitoringStack
from tests.conftest import free_port
from tests.support.service_process import Service, failing_service
from tests.support.waiting import wait_until
from tests.support.webhook import PostRecorder

pytestmark = pytest.mark.slow
DASHBOARD = PROJECT_ROOT / "deployments" / "grafana" / "textbook-ops.json"


class WebhookReceiver:
    """Alertmanager's webhook payloads (version 4), by receiver path."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, dict]] = []
        self._server = PostRecorder(lambda path, body: self.payloads.append((path.strip("/"), json.loads(body))))

    def url(self, path: str) -> str:
        return f"{self._server.base_url}/{path}"

    def received(self, alertname: str, status: str = "firing") -> set[str]:
        return {path for path, payload in self.payloads for alert in payload["alerts"]
                if alert["labels"]["alertname"] == alertname and alert["status"] == status}

    def stop(self) -> None:
        self._server.stop()


def alertmanager_config_for(receiver: WebhookReceiver) -> dict:
    """The shipped routing tree, grouping and inhibition, with every receiver replaced by a local webhook."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config["receivers"] = [{"name": r["name"], "webhook_configs": [{"url": receiver.url(r["name"]), "send_resolved": True}]}
                           for r in config["receivers"]]

    def quick(route: dict) -> None:
        route.update({"group_wait": "1s", "group_interval": "1s"})
        for child in route.get("routes", []):
            quick(child)

    quick(config["route"])
    return config


def short_for(rule: dict) -> dict:
    if "for" in rule:
        rule = {**rule, "for": "2s"}
    return rule


@pytest.fixture()
def service(settings, tmp_path: Path) -> Iterator[Service]:
    """The real service (uvicorn) whose vector index is unreachable: /health 200, every /v1/chat 503."""
    with failing_service(settings.database_url, tmp_path / "data") as running:
        yield running


@pytest.fixture()
def receiver() -> Iterator[WebhookReceiver]:
    webhook = WebhookReceiver()
    yield webhook
    webhook.stop()


@pytest.fixture()
def monitoring(service: Service, receiver: WebhookReceiver, tmp_path: Path) -> Iterator[MonitoringStack]:
    stack = MonitoringStack(
        root=tmp_path / "monitoring", api_target=service.base.removeprefix("http://"),
        prometheus_port=free_port(), alertmanager_port=free_port(), pushgateway_port=free_port(),
        scrape_interval="1s", evaluation_interval="1s", rule_transform=short_for,
        alertmanager_config=alertmanager_config_for(receiver),
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def alert_states(stack: MonitoringStack, alertname: str) -> set[str]:
    alerts = httpx.get(f"{stack.url('prometheus')}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {a["state"] for a in alerts if a["labels"]["alertname"] == alertname}


def grafana_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_error_rate_alert_goes_pending_then_firing_and_reaches_the_receivers(service, monitoring, receiver):
    prometheus = monitoring.url("prometheus")
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"] if rule["type"] == "alerting"}
    assert {"HighErrorRate", "ServiceDown", "SloAvailabilityBurnRateFast", "BackupNotVerifiedRecently"} <= loaded

    seen: list[str] = []
    stop = threading.Event()

    def traffic() -> None:  # steady failing chat traffic, bounded by the test's own deadline
        with httpx.Client(base_url=service.base, timeout=10) as client:
            for _ in range(2000):
                if stop.is_set():
                    return
                response = client.post("/v1/chat", json={"question": "What is a ROS 2 action?"})
                assert response.status_code == 503
                time.sleep(0.05)

    driver = threading.Thread(target=traffic, daemon=True)
    driver.start()
    try:
        def fired() -> bool:
            states = alert_states(monitoring, "HighErrorRate")
            for state in sorted(states):
                if not seen or seen[-1] != state:
                    seen.append(state)
            return "firing" in states

        wait_until(fired, timeout_s=45, what="HighErrorRate to fire")
        assert seen[0] == "pending" and seen[-1] == "firing", seen
        # critical: mailed and paged (the shipped routing tree), not posted to Slack
        paths = wait_until(lambda: receiver.received("HighErrorRate"), timeout_s=20, what="the alert at the webhook receiver")
        wait_until(lambda: receiver.received("HighErrorRate") >= {"email", "pagerduty"}, timeout_s=10,
                   what="both critical routes")
        assert "slack" not in receiver.received("HighErrorRate"), paths
        alert = next(a for path, payload in receiver.payloads if path == "pagerduty" for a in payload["alerts"]
                     if a["labels"]["alertname"] == "HighErrorRate")
        assert alert["annotations"]["runbook_url"] == "runbooks/high-error-rate.md#higherrorrate"
        assert alert["labels"]["severity"] == "critical"
    finally:
        stop.set()
        driver.join(timeout=15)

    for recorded in ("service:cpu_usage:ratio_rate5m", "service:memory_usage:ratio", "service:disk_usage:ratio",
                     "service:db_pool_usage:ratio"):
        data = httpx.get(f"{prometheus}/api/v1/query", params={"query": recorded}, timeout=5).json()
        assert data["data"]["result"], f"{recorded} has no data from the live service"

    # The service goes down: ServiceDown fires and Alertmanager inhibits the error-rate alert it explains.
    service.process.terminate()
    service.process.wait(timeout=30)
    wait_until(lambda: "firing" in alert_states(monitoring, "ServiceDown"), timeout_s=30, what="ServiceDown to fire")
    wait_until(lambda: receiver.received("ServiceDown") >= {"email", "pagerduty"}, timeout_s=20,
               what="ServiceDown at the receivers")

    def inhibited() -> bool:
        alerts = httpx.get(f"{monitoring.url('alertmanager')}/api/v2/alerts", timeout=5).json()
        return any(a["labels"]["alertname"] == "HighErrorRate" and a["status"]["inhibitedBy"] for a in alerts)

    wait_until(inhibited, timeout_s=20, what="HighErrorRate inhibited by ServiceDown")

    # The Pushgateway is scraped with honor_labels: a flow's job label survives.
    push = httpx.put(f"{monitoring.url('pushgateway')}/metrics/job/restore_drill",
                     content=b"restore_drill_success 0\n", timeout=5)
    assert push.status_code in (200, 202)

    def pushed() -> list:
        query = httpx.get(f"{prometheus}/api/v1/query", params={"query": "restore_drill_success"}, timeout=5).json()
        return query["data"]["result"]

    assert wait_until(pushed, timeout_s=15, what="the pushed metric in Prometheus")[0]["metric"]["job"] == "restore_drill"

    # Every panel of the Grafana dashboard runs against this Prometheus without an error.
    errors = []
    for title, expr in grafana_queries():
        query = re.sub(r"\$__rate_interval|\$__interval", "1m", expr)
        response = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=10)
        if response.status_code != 200 or response.json().get("status") != "success":
            errors.append(f"{title}: {query}: {response.text[:300]}")
    assert not errors, "\n".join(errors)
