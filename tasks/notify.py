"""Operational metrics pushed to a Prometheus Pushgateway when PUSHGATEWAY_URL is set."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from app.settings import Settings


@task(name="push-metrics", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def push_metrics(settings: Settings, job: str, values: dict[str, float], grouping_key: dict[str, str] | None = None) -> bool:
    """Push gauges (name -> value) under `job` (and `grouping_key`, which labels every value).

    Push-add (HTTP POST): only the pushed names are replaced in the group, so a failed run that pushes
    `..._success 0` keeps the last success timestamp an earlier run pushed; the alert rules rely on it.
    Returns False (and logs) when no Pushgateway is configured.
    """
    if not settings.pushgateway_url:
        get_run_logger().info("PUSHGATEWAY_URL not set: metrics %s not pushed", sorted(values))
        return False
    registry = CollectorRegistry()
    for name, value in values.items():
        Gauge(name, name.replace("_", " "), registry=registry).set(value)
    pushadd_to_gateway(settings.pushgateway_url, job=job, registry=registry, grouping_key=grouping_key, timeout=10)
    return True


@task(name="send-notification", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def send_notification(url: str, subject: str, body: str) -> None:
    """Through a Prefect notification block (a generic webhook): POST {"subject", "body"} as JSON."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name="textbook-ops-alerts", url=url, method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"}, allow_private_urls=True,
    )
    block.notify(body=body, subject=subject)
