"""OpenTelemetry traces: a span per request (FastAPI's own) with children for embedding, vector search, generation
and the database writes. Off by default (TRACING_ENABLED=false): then nothing is imported, no middleware is installed and
`span()` is a shared no-op context, so tracing costs nothing. On, spans go over OTLP/HTTP to
OTEL_EXPORTER_OTLP_ENDPOINT (Jaeger, Tempo, a collector or a vendor); the flows' process uses the same provider,
and Prefect 3 adds its own flow-run and task-run spans to it (prefect.telemetry.run_telemetry)."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any

from app.observability.logging_setup import trace_id_var
from app.settings import Settings

_NO_SPAN: AbstractContextManager[Any] = contextlib.nullcontext()
_tracer: Any = None  # an OpenTelemetry Tracer once configure_tracing() has run with tracing enabled
_provider: Any = None
_record_question = False
_request_span: ContextVar[Any] = ContextVar("request_span", default=None)


def configure_tracing(settings: Settings, *, service_name: str, exporter: Any = None) -> bool:
    """Set this process's tracer provider (once) and add `exporter` (default: OTLP/HTTP, batched).

    Returns whether tracing is on. An explicit `exporter` is flushed span by span (tests: the SDK's in-memory
    exporter); the default OTLP exporter is batched in a background thread so a request never waits for it."""
    global _tracer, _provider, _record_question
    if not settings.tracing_enabled:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({
            "service.name": settings.otel_service_name or service_name, "deployment.environment": settings.environment}))
        trace.set_tracer_provider(_provider)
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = settings.otel_exporter_otlp_endpoint
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
                endpoint=f"{endpoint.rstrip('/')}/v1/traces" if endpoint else None)))
    if exporter is not None:
        _provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracer = _provider.get_tracer("textbook-ops")
    _record_question = settings.tracing_record_question
    return True


def stop_tracing() -> None:
    """Flush and stop exporting (tests; a process that configured tracing exits through here)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def tracing_active() -> bool:
    return _tracer is not None


def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
    """A child span of the current one, or a shared no-op when tracing is off."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None})


def set_attributes(**attributes: Any) -> None:
    """Attributes on the request's span (or the current one outside a request)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    current = _request_span.get() or trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key, value)


def record_question(question: str) -> None:
    """The question text goes on a span only with TRACING_RECORD_QUESTION=true: traces are not purged."""
    if _record_question:
        set_attributes(**{"rag.question": question})


class TraceIdMiddleware:
    """The trace id of the request in X-Trace-Id and in every log line written while serving it.

    The request's span itself is FastAPI's own (fastapi.telemetry, on as soon as a tracer provider is set: a SERVER
    span `POST /v1/chat` with http.route and the status, continuing an incoming W3C `traceparent`); this middleware
    runs inside it, remembers it for `set_attributes`, and is installed only when tracing is on."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _tracer is None:
            await self.app(scope, receive, send)
            return
        from opentelemetry import trace

        request_span = trace.get_current_span()
        context = request_span.get_span_context()
        if not context.is_valid:
            await self.app(scope, receive, send)
            return
        trace_id = format(context.trace_id, "032x")
        tokens = (trace_id_var.set(trace_id), _request_span.set(request_span))

        async def send_with_trace_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-trace-id", trace_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_trace_id)
        finally:
            trace_id_var.reset(tokens[0])
            _request_span.reset(tokens[1])


def start_detached_span(name: str, **attributes: Any) -> Any:
    """A child of the current span that is not made current: for work spread over a generator's yields (a streamed
    answer), where attaching a context in one thread and detaching it in another is not allowed. End it yourself."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, attributes={k: v for k, v in attributes.items() if v is not None})
