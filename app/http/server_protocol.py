"""uvicorn's HTTP protocol with a deadline for request headers (uvicorn has none of its own).

uvicorn closes idle keep-alive connections (`timeout_keep_alive`), but a connection that sends nothing, or sends
part of its request headers and then stalls, is kept open for ever: enough of them exhaust the worker's file
descriptors without any request reaching the app, where the other limits apply. Here a connection must complete
each request's headers within HEADER_READ_TIMEOUT_S of connecting or of that request's first byte; else it is
closed. Bodies have their own deadline (BODY_READ_TIMEOUT_S, `app.http.middleware.RequestBodyMiddleware`).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import get_settings

log = logging.getLogger(__name__)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout_s: float | None = None  # read from the settings on the first connection (in each worker)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            return  # the deadline runs from the connection (or the request's first byte), not from each packet
        cls = type(self)
        if cls.header_timeout_s is None:
            cls.header_timeout_s = get_settings().header_read_timeout_s
        self._header_deadline = self.loop.call_later(cls.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            log.info("closed a connection from %s: no complete request headers within %.0f s",
                     self.client[0] if self.client else "?", self.header_timeout_s)
            self.transport.close()
