"""prefect.yaml: every entrypoint imports, and its parameters match the flow's signature."""

import importlib
import inspect

import pytest
import yaml

from app.settings import PROJECT_ROOT

CONFIG = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in CONFIG["deployments"]}


def load_flow(entrypoint: str):
    path, name = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_entrypoint_imports_and_parameters_match(name):
    deployment = DEPLOYMENTS[name]
    flow = load_flow(deployment["entrypoint"])
    assert flow.name == name, "deployment and flow share a name, so `flow/deployment` reads `x/x`"
    signature = inspect.signature(flow.fn)
    assert set(deployment.get("parameters") or {}) <= set(signature.parameters), "unknown parameter"
    required = {p for p, v in signature.parameters.items() if v.default is inspect.Parameter.empty}
    assert required <= set(deployment.get("parameters") or {}), "a required parameter has no default"
    assert deployment["work_pool"]["name"] == "ops" and deployment["description"] and deployment["tags"]
    assert flow.__doc__ or inspect.getmodule(flow.fn).__doc__


def test_schedules_are_the_documented_ones():
    assert DEPLOYMENTS["backup-database"]["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC"}]
    assert DEPLOYMENTS["restore-drill"]["schedules"] == [{"cron": "30 3 * * *", "timezone": "UTC"}]
    assert "schedules" not in DEPLOYMENTS["restore-database"] and "schedules" not in DEPLOYMENTS["ingest-textbook"]


def test_database_credentials_rotate_every_30_days_and_expired_keys_are_revoked_hourly():
    [schedule] = DEPLOYMENTS["rotate-db-credentials"]["schedules"]
    assert schedule["interval"] == 30 * 24 * 3600
    assert DEPLOYMENTS["revoke-expired-api-keys"]["schedules"] == [{"cron": "15 * * * *", "timezone": "UTC"}]
    assert "schedules" not in DEPLOYMENTS["rotate-api-key"] and "schedules" not in DEPLOYMENTS["rotate-openai-key"]


def test_readers_data_is_purged_daily_after_the_backup_and_drill():
    assert DEPLOYMENTS["purge-personal-data"]["schedules"] == [{"cron": "30 4 * * *", "timezone": "UTC"}]


def test_the_authors_get_their_content_gaps_report_every_monday():
    assert DEPLOYMENTS["content-gaps"]["schedules"] == [{"cron": "0 7 * * 1", "timezone": "UTC"}]
