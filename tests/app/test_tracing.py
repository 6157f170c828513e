"""OpenTelemetry spans of the service and the flows, caught with the SDK's in-memory exporter."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app.observability import tracing
from app.observability.logging_setup import JsonFormatter
from app.settings import PROJECT_ROOT

QUESTION = "How does a Kalman filter fuse odometry with LiDAR?"


@pytest.fixture(scope="module")
def spans(settings) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing(settings.model_copy(update={"tracing_enabled": True}), service_name="test",
                                     exporter=exporter)
    yield exporter
    tracing.stop_tracing()


@pytest.fixture
def traced_client(client, spans):
    """The session's running app (it holds the index): with a tracer provider set, FastAPI's own request spans are
    on; the trace-id middleware goes where create_app puts it when tracing is on (inside FastAPI's span)."""
    spans.clear()
    original = client.app.middleware_stack
    client.app.middleware_stack = tracing.TraceIdMiddleware(original)
    yield client
    client.app.middleware_stack = original


def by_name(finished, name: str) -> list:
    return [s for s in finished if s.name == name]


def descends_from(span, ancestor, finished) -> bool:
    parents = {s.context.span_id: s.parent.span_id if s.parent else None for s in finished}
    current = span.parent.span_id if span.parent else None
    while current is not None:
        if current == ancestor.context.span_id:
            return True
        current = parents.get(current)
    return False


def test_a_chat_request_is_one_trace_with_embedding_search_generation_and_db_write(traced_client, spans):
    response = traced_client.post("/v1/chat", json={"question": QUESTION})
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    [request] = [s for s in finished if s.kind == SpanKind.SERVER]
    assert request.name == "POST /v1/chat" and request.attributes["http.route"] == "/v1/chat"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["rag.locale"] == "en" and request.attributes["rag.covered"] is True
    assert request.attributes["rag.chunks"] == len(response.json()["sources"]) or request.attributes["rag.chunks"] > 0
    assert response.headers["x-trace-id"] == format(request.context.trace_id, "032x")
    for name in ("query embedding", "vector search", "answer generation", "db write"):
        children = by_name(finished, name)
        assert children, f"no {name!r} span"
        assert all(descends_from(c, request, finished) for c in children), name
        assert all(c.context.trace_id == request.context.trace_id for c in children)
    every_value = json.dumps([dict(s.attributes) for s in finished], default=str)
    assert "Kalman" not in every_value, "the question text is not recorded by default"


def test_a_streamed_answer_has_its_generation_span_under_the_request(traced_client, spans):
    response = traced_client.post("/v1/chat/stream", json={"question": QUESTION})
    assert response.status_code == 200 and "event: final" in response.text
    finished = spans.get_finished_spans()
    [request] = [s for s in finished if s.kind == SpanKind.SERVER]
    [generation] = by_name(finished, "answer generation")
    assert descends_from(generation, request, finished)
    assert {"query embedding", "vector search", "db write"} <= {s.name for s in finished}


def test_an_incoming_traceparent_continues_the_callers_trace(traced_client, spans):
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"  # pragma: allowlist secret (a W3C example trace id)
    traced_client.get("/health", headers={"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"})
    [request] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert format(request.context.trace_id, "032x") == caller_trace


def test_log_lines_written_during_a_request_carry_the_trace_id_next_to_the_request_id(spans, caplog):
    from fastapi import FastAPI

    from app.http.middleware import RequestIdMiddleware
    from app.observability.logging_setup import install_secret_scrubbing

    install_secret_scrubbing()  # the record factory create_app() installs: it stamps the ids on every record
    app = FastAPI()

    @app.get("/answer")
    def answer() -> dict:
        logging.getLogger("app.services.chat").warning("answered")
        return {}

    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(tracing.TraceIdMiddleware)  # the order create_app uses
    spans.clear()
    with caplog.at_level(logging.INFO):
        response = TestClient(app).get("/answer")
    [record] = [r for r in caplog.records if r.getMessage() == "answered"]
    line = json.loads(JsonFormatter().format(record))
    [request] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert line["trace_id"] == response.headers["x-trace-id"] == format(request.context.trace_id, "032x")
    assert line["request_id"] == response.headers["x-request-id"]


def test_flow_runs_and_task_runs_are_spans_linked_to_the_run_ids(settings, prefect_harness, spans):
    from flows.purge_personal_data import purge_personal_data

    spans.clear()
    state = purge_personal_data(as_of="2000-01-01T00:00:00+00:00", return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    finished = spans.get_finished_spans()
    [flow_span] = [s for s in finished if s.attributes.get("prefect.run.type") == "flow"]
    assert flow_span.attributes["prefect.run.id"] == flow_run_id
    task_spans = [s for s in finished if s.attributes.get("prefect.run.type") == "task"]
    assert len(task_spans) >= 4  # three purge steps and the report
    assert all(s.parent.span_id == flow_span.context.span_id for s in task_spans)
    assert all(s.context.trace_id == flow_span.context.trace_id for s in task_spans)


def test_tracing_off_loads_no_sdk_and_installs_no_middleware():
    code = (
        "import sys\n"
        "from app.main import create_app\n"
        "from app.settings import Settings\n"
        "from app.observability import tracing\n"
        "app = create_app(Settings(_env_file=None, tracing_enabled=False))\n"
        "assert not any(m.cls is tracing.TraceIdMiddleware for m in app.user_middleware)\n"
        "assert tracing.span('x') is tracing.span('y')\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry.sdk')], 'the SDK was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
