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
# Autoscaling (https://render.com/docs/blueprint-spec#scaling, https://render.com/docs/scaling): instance counts
# 1-100 (the per-service maximum), utilisation targets 1-90 %, at least one of the two targets.
_percent = {"type": "integer", "minimum": 1, "maximum": 90}
_scaling = {
    "type": "object", "additionalProperties": False, "required": ["minInstances", "maxInstances"],
    "anyOf": [{"required": ["targetCPUPercent"]}, {"required": ["targetMemoryPercent"]}],
    "properties": {"minInstances": {"type": "integer", "minimum": 1, "maximum": 100},
                   "maxInstances": {"type": "integer", "minimum": 1, "maximum": 100},
                   "targetCPUPercent": _percent, "targetMemoryPercent": _percent},
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
        "scaling": _scaling, "disk": {"type": "object"}, "domains": {"type": "array"},
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


def test_the_api_autoscales_between_two_and_four_instances_and_the_worker_does_not():
    web, worker = services()["web"], services()["worker"]
    scaling = web["scaling"]
    assert (scaling["minInstances"], scaling["maxInstances"]) == (2, 4)
    assert "numInstances" not in web, "with both, Render's autoscaling wins: one source of truth"
    assert "scaling" not in worker and "numInstances" not in worker, "one Prefect worker polls the pool"
    for wrong in ({**scaling, "targetCPUPercent": 95}, {"minInstances": 2, "maxInstances": 4},
                  {**scaling, "minInstance": 2}):
        try:
            jsonschema.validate({"services": [{**web, "scaling": wrong}]}, SCHEMA)
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"{wrong} must fail")


def test_behind_render_the_reader_is_left_of_renders_proxy_and_cloudflare():
    """Render's proxy (a 10.x peer) forwards `<reader>, <Cloudflare edge>`: with the blueprint's TRUSTED_PROXIES
    the reader is found, and what the reader wrote further left is not believed."""
    import asyncio

    from app.http.hygiene import TrustedProxyMiddleware
    from app.settings import load_settings

    value = next(v["value"] for g in BLUEPRINT["envVarGroups"] for v in g["envVars"] if v["key"] == "TRUSTED_PROXIES")
    networks = load_settings(_env_file=None, trusted_proxies=value).trusted_proxy_networks
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["client"][0])

    middleware = TrustedProxyMiddleware(app, networks)
    for forwarded in (b"198.51.100.7, 104.22.17.40", b"6.6.6.6, 198.51.100.7, 172.70.1.1",
                      b"2001:db8::5, 2606:4700::1"):
        asyncio.run(middleware({"type": "http", "client": ("10.21.157.68", 4000),
                                "headers": [(b"x-forwarded-for", forwarded)]}, None, None))
    assert seen == ["198.51.100.7", "198.51.100.7", "2001:db8::5"]
