"""The OpenAPI document lists, for every /v1 operation, each refusal the HTTP edge can answer it with."""

from __future__ import annotations

import uuid

import pytest

from app.http.middleware import route_template
from app.main import create_app
from app.settings import Settings

V1_ERRORS = ["401", "403", "404", "408", "413", "422", "429", "503", "504"]
# Each operation with its success code and the error codes it documents (as before the /v1 router declared them).
OPERATIONS = {
    ("post", "/v1/chat"): ["200", *V1_ERRORS],
    ("post", "/v1/chat/stream"): ["200", *V1_ERRORS],
    ("post", "/v1/search"): ["200", *V1_ERRORS],
    ("get", "/v1/search"): ["200", *V1_ERRORS],
    ("get", "/v1/sessions/{session_id}"): ["200", *V1_ERRORS],
    ("delete", "/v1/sessions/{session_id}"): ["204", *V1_ERRORS],
    ("post", "/v1/feedback"): ["201", *V1_ERRORS],
    ("get", "/health"): ["200"],
    ("get", "/ready"): ["200"],
}


@pytest.fixture(scope="module")
def app():
    return create_app(Settings(_env_file=None, tracing_enabled=False))


def test_every_operation_documents_the_same_responses_as_before(app):
    paths = app.openapi()["paths"]
    documented = {(method, path): sorted(operation["responses"])
                  for path, operations in paths.items() for method, operation in operations.items()}
    assert documented == OPERATIONS


def test_every_v1_error_response_is_an_error_response_with_a_description(app):
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    paths = app.openapi()["paths"]
    for (method, path), codes in OPERATIONS.items():
        responses = paths[path][method]["responses"]
        for code in codes[1:]:
            assert responses[code]["content"] == error, (method, path, code)
            assert responses[code]["description"] not in ("", "Not Found", "Validation Error"), (method, path, code)
    assert paths["/v1/chat/stream"]["post"]["responses"]["200"]["content"]["text/event-stream"] == {}


def test_every_v1_operation_takes_the_api_key_and_health_does_not(app):
    paths = app.openapi()["paths"]
    for (method, path) in OPERATIONS:
        headers = {p["name"] for p in paths[path][method].get("parameters", []) if p["in"] == "header"}
        assert ("x-api-key" in headers) == path.startswith("/v1/"), (method, path)


@pytest.mark.parametrize(("method", "path", "template"), [
    ("POST", "/v1/chat", "/v1/chat"),
    ("POST", "/v1/chat/stream", "/v1/chat/stream"),
    ("DELETE", f"/v1/sessions/{uuid.UUID(int=7)}", "/v1/sessions/{session_id}"),
    ("GET", "/health", "/health"),
    ("GET", "/v1/unknown", "unmatched"),
    ("GET", "/v1/chat", "unmatched"),
])
def test_a_request_refused_before_routing_is_counted_under_its_route(app, method, path, template):
    assert route_template({"type": "http", "app": app, "method": method, "path": path}) == template
