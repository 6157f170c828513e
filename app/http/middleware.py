"""The HTTP middleware stack (`install_middleware`, outermost first) and its own pieces: request ids, metrics by
route, and the request body limits (size and time). Proxies, security headers and load limits: app/http/hygiene.py."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import compile_path

from app.http.errors import send_error
from app.http.hygiene import (
    ClientConcurrencyMiddleware,
    InFlightGauge,
    InFlightLimitMiddleware,
    RequestTimeoutMiddleware,
    SecurityHeadersMiddleware,
    TrustedProxyMiddleware,
)
from app.observability.logging_setup import correlation_id_var, request_id_var
from app.observability.metrics import HTTP_REQUESTS
from app.observability.tracing import TraceIdMiddleware
from app.settings import Settings

log = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Give every request its own id (X-Request-ID in the answer, `request_id` in logs and in query_log).

    A valid incoming X-Request-ID is the client's correlation id, not a key: it is kept beside the id
    (`correlation_id` in logs and query_log, echoed as X-Correlation-ID), so a client reusing one never collides
    with an earlier request.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        try:
            correlation_id: str | None = str(uuid.UUID(incoming))
        except ValueError:
            correlation_id = None
        request_id = str(uuid.uuid4())
        state = scope.setdefault("state", {})
        state["request_id"], state["correlation_id"] = request_id, correlation_id
        token = request_id_var.set(request_id)  # every log record made while serving it carries the ids
        correlation_token = correlation_id_var.set(correlation_id)

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", [])
                           if h[0].lower() not in (b"x-request-id", b"x-correlation-id")]
                headers.append((b"x-request-id", request_id.encode()))
                if correlation_id:
                    headers.append((b"x-correlation-id", correlation_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            correlation_id_var.reset(correlation_token)


def route_template(scope: dict) -> str:
    """The route's path template; for a request refused before routing (shed, throttled), the route it asked for."""
    # A route of an included router (`/v1` + `/chat`): FastAPI keeps the path with its prefixes beside the route.
    effective = (scope.get("fastapi") or {}).get("effective_route_context")
    route = scope.get("route")
    if effective is not None or route is not None:
        return getattr(effective, "path_format", None) or getattr(route, "path", "unmatched")
    return _matching_path(getattr(getattr(scope.get("app"), "router", None), "routes", ()), scope, prefix="")


def _matching_path(routes: Any, scope: dict, *, prefix: str) -> str:
    for candidate in routes:
        included = getattr(candidate, "original_router", None)  # FastAPI wraps an included router's routes
        if included is not None:  # ... and keeps the prefix it was included with (`/v1`) beside them
            inner = prefix + getattr(getattr(candidate, "include_context", None), "prefix", "")
            if (path := _matching_path(included.routes, scope, prefix=inner)) != "unmatched":
                return path
            continue
        path = prefix + getattr(candidate, "path", "")
        methods = getattr(candidate, "methods", None) or ()
        if scope.get("method") in methods and compile_path(path)[0].match(scope.get("path", "")):
            return path
    return "unmatched"


class HttpMetricsMiddleware:
    """Count every response by route template (not the raw path: bounded labels), method and status code.

    The availability SLO and the error-rate alert read `rag_http_requests_total`; a request that fails before
    a route answers (an exception escaping the app) counts as a 500.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_counting(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            HTTP_REQUESTS.labels(route=route_template(scope), method=scope.get("method", ""), code=str(status)).inc()


class BodyTooLarge(HTTPException):
    """Raised while a body streams in. An HTTPException, so FastAPI's body parsing lets it through as a 413
    instead of turning it into a 400 'error parsing the body'."""

    def __init__(self, max_bytes: int = 0) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {max_bytes} bytes")


class BodyTooSlow(HTTPException):
    def __init__(self, timeout_s: float = 0) -> None:
        super().__init__(status_code=408, detail=f"the request body did not arrive within {timeout_s:g} s")


class RequestBodyMiddleware:
    """Refuse bodies over `max_bytes` with 413 (by Content-Length up front, or while streaming in), and bodies
    that have not arrived whole within `timeout_s` of the request's headers with 408; both close the connection.

    The deadline is what keeps a client that sends one byte now and then from holding a request slot (and a
    connection) until the request timeout: such requests never reach the rate limiter, which runs on the parsed body.
    """

    def __init__(self, app: Any, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def _reject(self, scope: dict, send: Any, refusal: HTTPException) -> None:
        code = "payload_too_large" if refusal.status_code == 413 else "body_timeout"
        await send_error(scope, send, refusal.status_code, str(refusal.detail), code, close=True)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(scope, send, BodyTooLarge(self.max_bytes))
            return
        received = 0
        body_complete = False
        response_started = False
        deadline = asyncio.get_running_loop().time() + self.timeout_s

        async def limited_receive() -> dict:
            nonlocal received, body_complete
            if body_complete:
                return await receive()  # after the body: only a disconnect can come, whenever it comes
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except TimeoutError:
                raise BodyTooSlow(self.timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
                body_complete = not message.get("more_body", False)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except (BodyTooLarge, BodyTooSlow) as refusal:
            if not response_started:
                await self._reject(scope, send, refusal)


def install_middleware(app: FastAPI, settings: Settings, *, tracing: bool) -> InFlightGauge:
    """The HTTP stack, outermost first; returns the in-flight gauge that /ready reads."""
    gauge = InFlightGauge(settings.max_in_flight_requests)
    stack = [
        # The real client address and scheme, before anything reads them.
        Middleware(TrustedProxyMiddleware, networks=settings.trusted_proxy_networks),
        # Outside CORS, so preflights get the security headers too.
        Middleware(SecurityHeadersMiddleware, hsts_max_age_s=settings.hsts_max_age_s),
        # Outside the request id: error answers (413 and 503 too) carry the CORS headers the site needs to read them.
        Middleware(CORSMiddleware, allow_origins=settings.cors_allowed_origins, allow_methods=["GET", "POST", "DELETE"],
                   allow_headers=["content-type", "x-api-key", "x-request-id"],
                   expose_headers=["x-request-id", "x-correlation-id", "retry-after"], max_age=600),
        *([Middleware(TraceIdMiddleware)] if tracing else []),  # inside FastAPI's request span, outside the request id
        Middleware(RequestIdMiddleware),
        Middleware(HttpMetricsMiddleware),
        Middleware(ClientConcurrencyMiddleware, limit=settings.max_in_flight_per_client),
        Middleware(InFlightLimitMiddleware, gauge=gauge),
        Middleware(RequestTimeoutMiddleware, timeout_s=settings.request_timeout_s),
        Middleware(RequestBodyMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_read_timeout_s),
    ]
    for layer in reversed(stack):  # Starlette wraps each added middleware around the ones added before it
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    return gauge
