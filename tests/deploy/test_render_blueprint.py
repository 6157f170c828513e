"""render.yaml against the fields Render documents for Blueprints (https://render.com/docs/blueprint-spec).

The schema below is written from that reference: the root fields, the service fields (with the types and
values it lists), the five ways to set an environment variable, and environment groups. Unknown keys are
errors, so a typo (`healthcheckPath`) fails here instead of being ignored by Render.
"""

from __future__ import annotations

import jsonschema
import yaml

from app.settings import PROJECT_ROOT

BLUEPRINT = yaml.safe_load((PROJECT_ROOT / "render.yaml").read_text())

_string = {"type": "string", "minLength": 1}
_env_var = {
    "oneOf": [
        {"type": "object", "additionalProperties": False, "required": ["key", "value"],
         "properties": {"key": _string, "value": {"type": ["string", "number", "boolean"]},
                        "previewValue": {"type": "string"}}},
        {"type": "object", "additionalProperties": False, "required": ["key", "generateValue"],
         "properties": {"key": _string, "generateValue": {"const": True}}},
        {"type": "object", "additionalProperties": False, "required": ["key", "sync"],
         "properties": {"key": _string, "sync": {"const": False}}},
        {"type": "object", "additionalProperties": False, "required": ["key", "fromDatabase"],
         "properties": {"key": _string, "fromDatabase": {
             "type": "object", "required": ["name", "property"], "additionalProperties": False,
             "properties": {"name": _string, "property": {"enum": [
                 "host", "port", "database", "user", "password", "connectionString"]}}}}},
        {"type": "object", "additionalProperties": False, "required": ["key", "fromService"],
         "properties": {"key": _string, "fromService": {
             "type": "object", "required": ["type", "name"], "additionalProperties": False,
             "properties": {"type": {"enum": ["web", "pserv", "worker", "cron", "keyvalue", "redis"]},
                            "name": _string, "property": {"enum": ["host", "port", "hostport", "connectionString"]},
                            "envVarKey": _string}}}},
        {"type": "object", "additionalProperties": False, "required": ["fromGroup"],
         "properties": {"fromGroup": _string}},
    ]
}
_service = {
    "type": "object",
    "required": ["type", "name"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["web", "pserv", "worker", "cron", "keyvalue", "redis"]},
        "name": _string,
        "runtime": {"enum": ["docker", "image", "elixir", "go", "node", "python", "ruby", "rust", "static"]},
        "plan": {"enum": ["free", "starter", "standard", "pro", "pro plus", "pro max", "pro ultra"]},
        "region": {"enum": ["oregon", "ohio", "virginia", "frankfurt", "singapore"]},
        "repo": _string, "branch": _string, "rootDir": _string,
        "autoDeploy": {"type": "boolean"},
        "autoDeployTrigger": {"enum": ["commit", "off", "checksPass"]},
        "buildCommand": _string, "startCommand": _string, "preDeployCommand": _string,
        "dockerfilePath": _string, "dockerContext": _string, "dockerCommand": _string,
        "registryCredential": {"type": "object"},
        # runtime: image (https://render.com/docs/blueprint-spec#image): the image's URL and the workspace's
        # registry credentials by name.
        "image": {"type": "object", "required": ["url"], "additionalProperties": False, "properties": {
            "url": _string, "creds": {"type": "object", "required": ["fromRegistryCreds"], "additionalProperties": False,
                                      "properties": {"fromRegistryCreds": {
                                          "type": "object", "required": ["name"], "additionalProperties": False,
                                          "properties": {"name": _string}}}}}},
        "healthCheckPath": {"type": "string", "pattern": "^/"},
        "numInstances": {"type": "integer", "minimum": 1},
        "scaling": {"type": "object"}, "disk": {"type": "object"}, "domains": {"type": "array"},
        "schedule": _string, "buildFilter": {"type": "object"}, "maxShutdownDelaySeconds": {"type": "integer"},
        "envVars": {"type": "array", "items": _env_var},
        "ipAllowList": {"type": "array"}, "previews": {"type": "object"}, "staticPublishPath": _string,
        "headers": {"type": "array"}, "routes": {"type": "array"}, "initialDeployHook": _string,
    },
}
_env_group = {
    "type": "object",
    "required": ["name", "envVars"],
    "additionalProperties": False,
    "properties": {"name": _string, "envVars": {"type": "array", "items": {
        "oneOf": [o for o in _env_var["oneOf"] if set(o["required"]) & {"value", "generateValue", "sync"}]}}},
}
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "version": {"type": "string"},
        "services": {"type": "array", "items": _service},
        "databases": {"type": "array"},
        "envVarGroups": {"type": "array", "items": _env_group},
        "projects": {"type": "array"},
        "ungrouped": {"type": "array"},
        "previews": {"type": "object"},
    },
}


def services() -> dict[str, dict]:
    return {s["type"]: s for s in BLUEPRINT["services"]}


def test_blueprint_follows_the_documented_fields():
    jsonschema.validate(BLUEPRINT, SCHEMA)


def test_schema_rejects_what_render_would_reject():
    web = {**services()["web"], "healthcheckPath": "/health"}
    try:
        jsonschema.validate({"services": [web]}, SCHEMA)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("a misspelled field must fail")


def test_web_service_runs_the_released_image_is_gated_and_migrates_before_deploy():
    web = services()["web"]
    assert web["runtime"] == "image" and "dockerfilePath" not in web, "Render pulls the image CI built, never builds"
    assert web["image"]["url"].startswith("ghcr.io/") and web["image"]["creds"] == {"fromRegistryCreds": {"name": "ghcr"}}
    group = {v["key"]: v for v in next(g for g in BLUEPRINT["envVarGroups"] if g["name"] == "textbook-ops-worker")["envVars"]}
    assert web["image"]["url"].rsplit(":", 1)[0] == group["IMAGE_REPOSITORY"]["value"], \
        "deploy-backend resolves digests in the repository Render pulls from"
    assert web["healthCheckPath"] == "/health"
    assert web["preDeployCommand"] == "python -m app migrate"
    assert "dockerCommand" not in web and "startCommand" not in web, \
        "the image's CMD (README's start command, tested in test_container.py) starts the service"
    assert web["autoDeployTrigger"] == "off", "deploys go through the deploy-backend flow"
    assert {"fromGroup": "textbook-ops"} in web["envVars"]


def test_prefect_worker_is_a_background_worker_with_the_same_image():
    worker = services()["worker"]
    assert worker["runtime"] == "image" and worker["image"] == services()["web"]["image"]
    assert worker["dockerCommand"].startswith("prefect worker start --pool ops")
    groups = {g["name"]: g for g in BLUEPRINT["envVarGroups"]}
    for item in worker["envVars"]:
        assert item["fromGroup"] in groups


def test_every_variable_is_a_setting_and_secrets_are_not_in_the_file():
    from app.settings import Settings

    known = {name.upper() for name in Settings.model_fields} | {"HF_HUB_OFFLINE", "PREFECT_API_URL",
                                                               "PREFECT_API_KEY"}
    for group in BLUEPRINT["envVarGroups"]:
        for item in group["envVars"]:
            assert item["key"] in known, f"{item['key']} is read by nothing"
            if any(word in item["key"] for word in ("KEY", "PASSWORD", "SECRET", "DATABASE_URL")):
                assert item.get("sync") is False, f"{item['key']} must be set in the Dashboard, not committed"
