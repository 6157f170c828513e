"""Operational metrics pushed to a Prometheus Pushgateway (PUSHGATEWAY_URL, or the local one when it answers)."""

from __future__ import annotations

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from app.settings import Settings


def pushgateway_for(settings: Settings) -> str | None:
    """PUSHGATEWAY_URL; else LOCAL_PUSHGATEWAY_URL when it answers (`make up`'s worker gets the one
    `make monitoring-up` starts, so runs push once monitoring is up and run quietly while it is not)."""
    if settings.pushgateway_url or not settings.local_pushgateway_url:
        return settings.pushgateway_url
    try:
        healthy = httpx.get(f"{settings.local_pushgateway_url}/-/healthy", timeout=2).status_code == 200
    except httpx.HTTPError:
        healthy = False
    return settings.local_pushgateway_url if healthy else None


@task(name="push-metrics", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def push_metrics(settings: Settings, job: str, values: dict[str, float], grouping_key: dict[str, str] | None = None) -> bool:
    """Push gauges (name -> value) under `job` (and `grouping_key`, which labels every value).

    Push-add (HTTP POST): only the pushed names are replaced in the group, so a failed run that pushes
    `..._success 0` keeps the last success timestamp an earlier run pushed; the alert rules rely on it.
    Returns False (and logs) when no Pushgateway is configured or answers.
    """
    url = pushgateway_for(settings)
    if not url:
        get_run_logger().info("no Pushgateway (PUSHGATEWAY_URL unset, none answers locally): metrics %s not pushed",
                              sorted(values))
        return False
    registry = CollectorRegistry()
    for name, value in values.items():
        Gauge(name, name.replace("_", " "), registry=registry).set(value)
    pushadd_to_gateway(url, job=job, registry=registry, grouping_key=grouping_key, timeout=10)
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
