"""ASGI middleware: request ids and the request body limit (413 before the body is read whole)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from starlette.exceptions import HTTPException

from app.logging_setup import request_id_var
from app.metrics import HTTP_REQUESTS

log = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Give every request an id (or keep a valid incoming X-Request-ID) and echo it in the response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        try:
            request_id = str(uuid.UUID(incoming))
        except ValueError:
            request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)  # every log record made while serving it carries the id

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


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
            route = scope.get("route")
            HTTP_REQUESTS.labels(route=getattr(route, "path", "unmatched"), method=scope.get("method", ""),
                                 code=str(status)).inc()


class BodyTooLarge(HTTPException):
    """Raised while a body streams in. An HTTPException, so FastAPI's body parsing lets it through as a 413
    instead of turning it into a 400 'error parsing the body'."""

    def __init__(self, max_bytes: int = 0) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {max_bytes} bytes")


class BodySizeLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413: by Content-Length up front, or while streaming in."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, scope: dict, send: Any) -> None:
        request_id = scope.get("state", {}).get("request_id")
        body = json.dumps({
            "detail": f"request body larger than {self.max_bytes} bytes",
            "error_code": "payload_too_large", "request_id": request_id,
        }).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"), (b"x-request-id", (request_id or "").encode()),
        ]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(scope, send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._reject(scope, send)
