"""HTTP hygiene: trusted proxies, security headers (and the rate-limit headers), a request timeout, load shedding
and a per-client cap. Their order in the stack is app/http/middleware.py's `install_middleware`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
import re
from functools import lru_cache
from typing import Any

from starlette.datastructures import MutableHeaders

from app.http.errors import send_error
from app.http.rate_limit import client_bucket

log = logging.getLogger(__name__)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

API_CSP = "default-src 'none'; frame-ancestors 'none'"
API_CSP_BYTES = API_CSP.encode()
# The OpenAPI pages (/docs, /redoc) load Swagger UI / ReDoc from jsDelivr; their inline scripts are allowed by hash.
HTML_CSP = ("default-src 'none'; script-src 'self' https://cdn.jsdelivr.net {hashes}; "
            "style-src 'self' https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
            "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
            "connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S | re.I)
COMMON_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                  (b"x-frame-options", b"DENY")]


@lru_cache(maxsize=4096)  # every request's peer address is parsed: the same few addresses come back
def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip().strip('"')
    if value.startswith("["):  # [v6]:port
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


class TrustedProxyMiddleware:
    """The client address and scheme from X-Forwarded-For / X-Forwarded-Proto, only when a trusted proxy sent them.

    X-Forwarded-For is read right to left: the first address that is not a trusted proxy is the client (anything
    left of it may be forged by the client itself).
    """

    def __init__(self, app: Any, networks: tuple[Network, ...]) -> None:
        self.app = app
        self.networks = networks

    def _trusted(self, address: Any) -> bool:
        ip = _parse_ip(address) if isinstance(address, str) else address
        return ip is not None and any(ip in network for network in self.networks)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client and self._trusted(client[0]):
            headers = scope.get("headers") or []
            forwarded = b",".join(v for k, v in headers if k == b"x-forwarded-for").decode("latin-1")
            hops = [_parse_ip(h) for h in forwarded.split(",") if h.strip()]
            for hop in reversed(hops):
                if hop is None:
                    break  # garbage from the proxy's side: keep the proxy's own address
                if not self._trusted(hop):
                    scope["client"] = (str(hop), 0)
                    break
            protos = b",".join(v for k, v in headers if k == b"x-forwarded-proto").decode("latin-1").split(",")
            if protos[-1].strip().lower() in ("http", "https"):
                scope["scheme"] = protos[-1].strip().lower()
        await self.app(scope, receive, send)


def html_csp(body: bytes) -> str:
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()}'"
                      for m in INLINE_SCRIPT.finditer(body))
    return HTML_CSP.format(hashes=hashes).replace("  ", " ")


class SecurityHeadersMiddleware:
    """nosniff, Referrer-Policy, frame denial and a CSP on every answer; HSTS over HTTPS; X-RateLimit-* when counted.

    HTML answers (only the OpenAPI pages) are held until complete so their CSP can allow their inline scripts by
    hash instead of 'unsafe-inline'.
    """

    def __init__(self, app: Any, hsts_max_age_s: int) -> None:
        self.app = app
        self.hsts = f"max-age={hsts_max_age_s}; includeSubDomains".encode() if hsts_max_age_s else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict | None = None
        parts: list[bytes] = []

        async def send_with_headers(message: dict) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                # The raw header list (names are lower-case bytes in ASGI), read once: every answer passes here.
                headers = message["headers"] = list(message.get("headers") or ())
                present = {name.lower() for name, _ in headers}
                extra = list(COMMON_HEADERS)
                if self.hsts and scope.get("scheme") == "https":
                    extra.append((b"strict-transport-security", self.hsts))
                state = (scope.get("state") or {}).get("rate_limit")
                if state is not None:
                    extra += state.headers()
                headers.extend((name, value) for name, value in extra if name not in present)
                content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
                if content_type.startswith(b"text/html"):
                    held = message
                    return
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", API_CSP_BYTES))
            elif held is not None and message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = b"".join(parts)
                MutableHeaders(scope=held).append("content-security-policy", html_csp(body))
                await send(held)
                message = {"type": "http.response.body", "body": body}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestTimeoutMiddleware:
    """504 with a JSON message when the app has not started its answer within `timeout_s`.

    Once an answer has started (a stream), it is not cut. A synchronous endpoint's thread cannot be stopped: it
    finishes in the background and its late answer is dropped.
    """

    def __init__(self, app: Any, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = abandoned = False

        async def guarded_send(message: dict) -> None:
            nonlocal started
            if abandoned:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        timed_out: asyncio.Future[bool] = loop.create_future()  # True: no answer had started at the deadline

        def settle(outcome: bool) -> None:
            if not timed_out.done() and not (outcome and started):
                timed_out.set_result(outcome)

        task.add_done_callback(lambda _: settle(False))
        deadline = loop.call_later(self.timeout_s, settle, True)
        try:
            abandoned = await timed_out
        finally:
            deadline.cancel()
        if not abandoned:
            await task  # done, or an answer has started (a stream): it is not cut
            return
        task.cancel()
        task.add_done_callback(_forget)
        log.warning("request %s %s timed out after %.1f s", scope.get("method"), scope.get("path"), self.timeout_s)
        await send_error(scope, send, 504, f"the request took longer than {self.timeout_s:g} s; retry shortly",
                         "request_timeout", retry_after_s=5)


class InFlightGauge:
    """Requests in progress in this worker, against the limit: shared by the load shedder and /ready."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    @property
    def saturated(self) -> bool:
        return self.in_flight >= self.limit


class InFlightLimitMiddleware:
    """Shed load: past `limit` requests in progress, answer 503 with Retry-After at once instead of queueing.

    An overloaded worker then fails fast and visibly (and recovers as soon as the queue is short) rather than
    letting every request wait into client timeouts. /health and /metrics are never shed, and /ready is not
    either: it answers 503 `saturated` itself, so a load balancer sees a full worker.
    """

    EXEMPT = ("/health", "/metrics", "/ready")

    def __init__(self, app: Any, gauge: InFlightGauge) -> None:
        self.app = app
        self.gauge = gauge

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        gauge = self.gauge
        if gauge.saturated:
            await send_error(scope, send, 503, f"the service is busy ({gauge.limit} requests in progress); retry shortly",
                             "overloaded", retry_after_s=1)
            return
        gauge.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gauge.in_flight -= 1


class ClientConcurrencyMiddleware:
    """At most `limit` requests in progress per client address (IPv6 per /64), past that 429 at once.

    The rate limiter counts requests once their body is parsed; this counts them from their headers, so one
    client holding many slow requests open cannot take every slot of the in-flight limit from everyone else.
    """

    EXEMPT = ("/health", "/metrics")

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_progress: dict[str, int] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        bucket = client_bucket(client[0] if client else "unknown")
        if self.in_progress.get(bucket, 0) >= self.limit:
            await send_error(scope, send, 429, f"too many requests in progress from this client address "
                             f"(at most {self.limit}); retry when one has finished", "too_many_in_progress",
                             retry_after_s=1)
            return
        self.in_progress[bucket] = self.in_progress.get(bucket, 0) + 1
        try:
            await self.app(scope, receive, send)
        finally:
            remaining = self.in_progress[bucket] - 1
            if remaining:
                self.in_progress[bucket] = remaining
            else:
                del self.in_progress[bucket]


def _forget(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a timed-out request failed later: %s", task.exception().__class__.__name__)
