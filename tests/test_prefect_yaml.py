"""prefect.yaml: every entrypoint imports, and its parameters match the flow's signature."""

import importlib
import inspect
import re

import pytest
import yaml

from app.settings import PROJECT_ROOT

CONFIG = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in CONFIG["deployments"]}
# Required parameters without a sensible default: the server refuses a run until the operator gives them.
OPERATOR_SUPPLIED = {"rotate-api-key": {"key_id"}}
# Free text by nature (paths, a question); everything else is an enum, a pattern, a date or a bounded number.
FREE_TEXT = {"ingest-textbook": {"source"}, "deploy-docs": {"checkout", "remote", "work_dir"},
             "synthetic-probe": {"question", "expected_source"}}


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
    operator_supplied = OPERATOR_SUPPLIED.get(name, set())
    assert required - operator_supplied <= set(deployment.get("parameters") or {}), "a required parameter has no default"
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


def schema_of(name: str) -> dict:
    from prefect.utilities.callables import parameter_schema

    return parameter_schema(load_flow(DEPLOYMENTS[name]["entrypoint"]).fn).model_dump_for_openapi()


def is_constrained(prop: dict) -> bool:
    variants = [v for v in prop.get("anyOf", [prop]) if v.get("type") != "null"]
    return bool(variants) and all(
        v.get("type") == "boolean" or "enum" in v or "pattern" in v or "format" in v
        or (v.get("type") == "array" and is_constrained(v.get("items", {})))
        or (v.get("type") in ("integer", "number") and ({"minimum", "exclusiveMinimum"} & set(v)))
        for v in variants)


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_every_deployment_parameter_says_what_a_valid_value_is(name):
    """The server validates runs against this schema (enforce_parameter_schema): a loose type accepts anything."""
    from prefect.utilities.schema_tools import validate

    schema = schema_of(name)
    loose = {p for p, prop in schema["properties"].items() if not is_constrained(prop)}
    assert loose <= FREE_TEXT.get(name, set()), f"parameters accepting anything: {sorted(loose)}"
    validate(DEPLOYMENTS[name].get("parameters") or {}, schema, raise_on_error=True, ignore_required=True)


@pytest.mark.parametrize(("name", "parameters", "named"), [
    ("backup-database", {"storage": "S3"}, "storage"),
    ("restore-drill", {"backup_id": "latest"}, "backup_id"),
    ("restore-database", {"target": "Textbook; DROP"}, "target"),
    ("ingest-textbook", {"locale": "fr"}, "locale"),
    ("cost-report", {"as_of": "yesterday"}, "as_of"),
    ("rotate-api-key", {"key_id": 0}, "key_id"),
    ("synthetic-probe", {"base_url": "localhost:8000"}, "base_url"),
    ("game-day", {"scenario": "meteor-strike"}, "scenario"),
    ("deploy-backend", {"image_digest": "latest"}, "image_digest"),
])
def test_a_bad_parameter_is_refused_naming_it(name, parameters, named):
    from prefect.utilities.schema_tools import ValidationError, validate

    with pytest.raises(ValidationError, match=f"'{named}'"):
        validate(parameters, schema_of(name), raise_on_error=True, ignore_required=True)


CREDENTIAL_NAMES = re.compile(r"url|password|passwd|secret|token|key|dsn|credential", re.I)


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_no_deployment_parameter_carries_a_secret(name):
    """Parameters are shown in the UI's Parameters tab and in CLI output: a secret goes in a block, named by a
    `*_block` parameter; ids and public URLs are no secrets. A SecretStr is no exception: masked in the UI, its
    value is still stored with the run."""
    not_secret = {"key_id", "base_url", "public_url", "api_url", "image_url", "service_url"}
    for parameter, prop in schema_of(name)["properties"].items():
        variants = prop.get("anyOf", [prop])
        assert not any(v.get("format") == "password" for v in variants), f"{name}: {parameter!r} is a secret value"
        if CREDENTIAL_NAMES.search(parameter) and parameter not in not_secret and not parameter.endswith("_block"):
            pytest.fail(f"{name}: parameter {parameter!r} may carry a secret")


def test_readers_data_is_purged_daily_after_the_backup_and_drill():
    assert DEPLOYMENTS["purge-personal-data"]["schedules"] == [{"cron": "30 4 * * *", "timezone": "UTC"}]


def test_the_authors_get_their_content_gaps_report_every_monday():
    assert DEPLOYMENTS["content-gaps"]["schedules"] == [{"cron": "0 7 * * 1", "timezone": "UTC"}]
