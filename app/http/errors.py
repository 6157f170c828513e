"""Errors the service maps to HTTP answers: always JSON, never a stack trace."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.schemas import ErrorResponse
from app.core.api_keys import InvalidApiKey, MissingScope
from app.http.rate_limit import RateLimitExceeded
from app.observability.metrics import QUERY_ERRORS
from app.rag.batcher import EncoderOverloaded
from app.rag.embeddings import EmbeddingError
from app.rag.vector_index import IndexUnavailable
from app.settings import Settings

log = logging.getLogger(__name__)
RETRY_AFTER_S = "5"


class NotFound(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class DatabaseUnavailable(Exception):
    """Postgres did not answer."""


class InvalidRequest(Exception):
    """A well-formed request the service cannot serve as asked (422), e.g. an unknown chapter."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


# What any /v1 operation can answer besides its own result (the /v1 router declares them once: app/api/main.py).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": description} for code, description in {
        401: "no valid X-API-Key (when anonymous access is off, or the key is revoked or expired)",
        403: "the API key lacks the scope",
        404: "an unknown session, or an unknown request id for feedback",
        408: "the request body did not arrive within BODY_READ_TIMEOUT_S",
        413: "request body too large",
        422: "invalid request",
        429: "rate limit exceeded (Retry-After, X-RateLimit-Limit/Remaining/Reset), or too many requests in progress",
        503: "Postgres, the vector index or the embedding backend unavailable, or the service busy (Retry-After)",
        504: "no answer within REQUEST_TIMEOUT_S",
    }.items()
}


def error_body(request: Request, detail: str, error_code: str) -> dict[str, str | None]:
    return {"detail": detail, "error_code": error_code, "request_id": getattr(request.state, "request_id", None)}


def _readable(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{location}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def unavailable(request: Request, detail: str, error_code: str) -> JSONResponse:
    QUERY_ERRORS.labels(error_code=error_code).inc()
    return JSONResponse(
        status_code=503, content=error_body(request, detail, error_code), headers={"Retry-After": RETRY_AFTER_S}
    )


async def send_error(scope: dict, send: Any, status: int, detail: str, error_code: str,
                     retry_after_s: int | None = None, close: bool = False) -> None:
    """A JSON error answer from middleware (outside FastAPI's handlers), counted like theirs."""
    QUERY_ERRORS.labels(error_code=error_code).inc()
    request_id = (scope.get("state") or {}).get("request_id")
    body = json.dumps({"detail": detail, "error_code": error_code, "request_id": request_id}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"x-request-id", (request_id or "").encode())]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_error_handlers(app: FastAPI, settings: Settings) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        QUERY_ERRORS.labels(error_code="invalid_request").inc()
        body = error_body(request, _readable(exc), "invalid_request")
        body["errors"] = [  # type: ignore[assignment]
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content=body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 408: "body_timeout",
                413: "payload_too_large"}.get(exc.status_code, "http_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code in (408, 413):  # the rest of the body is not read: the connection cannot be reused
            QUERY_ERRORS.labels(error_code=code).inc()
            headers["Connection"] = "close"
        return JSONResponse(status_code=exc.status_code, content=error_body(request, str(exc.detail), code),
                            headers=headers or None)

    @app.exception_handler(InvalidApiKey)
    async def invalid_key(request: Request, exc: InvalidApiKey) -> JSONResponse:
        QUERY_ERRORS.labels(error_code="unauthorized").inc()
        return JSONResponse(status_code=401, content=error_body(
            request, "a valid X-API-Key header is required", "unauthorized"), headers={"WWW-Authenticate": "ApiKey"})

    @app.exception_handler(MissingScope)
    async def missing_scope(request: Request, exc: MissingScope) -> JSONResponse:
        QUERY_ERRORS.labels(error_code="forbidden").inc()
        return JSONResponse(status_code=403, content=error_body(
            request, f"this API key lacks the {exc.scope!r} scope", "forbidden"))

    @app.exception_handler(RateLimitExceeded)
    async def rate_limited(request: Request, exc: RateLimitExceeded) -> JSONResponse:
        QUERY_ERRORS.labels(error_code="rate_limited").inc()
        state = exc.state
        detail = (f"rate limit exceeded: {state.limit} requests per {settings.rate_limit_window_s} s for this "
                  f"{exc.who}; retry in {state.retry_after_s} s")
        return JSONResponse(status_code=429, content=error_body(request, detail, "rate_limited"),
                            headers={"Retry-After": str(state.retry_after_s)})

    @app.exception_handler(InvalidRequest)
    async def invalid_request(request: Request, exc: InvalidRequest) -> JSONResponse:
        QUERY_ERRORS.labels(error_code="invalid_request").inc()
        return JSONResponse(status_code=422, content=error_body(request, exc.detail, "invalid_request"))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content=error_body(request, f"{exc.what} not found", "not_found"))

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeoutError)
    @app.exception_handler(DatabaseUnavailable)
    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)
        return unavailable(request, "the database is unavailable; retry shortly", "database_unavailable")

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return unavailable(request, "the database connection was lost; retry shortly", "database_unavailable")
        log.exception("database error")
        QUERY_ERRORS.labels(error_code="database_error").inc()
        return JSONResponse(status_code=500, content=error_body(request, "internal database error", "database_error"))

    @app.exception_handler(IndexUnavailable)
    async def index_down(request: Request, exc: IndexUnavailable) -> JSONResponse:
        log.warning("vector index unavailable: %s", exc)
        return unavailable(request, f"the vector index is unavailable: {exc}", "index_unavailable")

    @app.exception_handler(EncoderOverloaded)
    async def encoder_overloaded(request: Request, exc: EncoderOverloaded) -> JSONResponse:
        QUERY_ERRORS.labels(error_code="overloaded").inc()
        return JSONResponse(status_code=503, headers={"Retry-After": "1"}, content=error_body(
            request, f"the service is busy ({exc}); retry shortly", "overloaded"))

    @app.exception_handler(EmbeddingError)
    async def embedding_down(request: Request, exc: EmbeddingError) -> JSONResponse:
        log.warning("embedding backend unavailable: %s", exc)
        return unavailable(request, "the embedding backend is unavailable; retry shortly", "embedding_unavailable")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        QUERY_ERRORS.labels(error_code="internal_error").inc()
        return JSONResponse(status_code=500, content=error_body(request, "internal error", "internal_error"))
