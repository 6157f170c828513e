"""Loopback HTTP servers that record what is POSTed to them: a webhook receiver (JSON bodies) and a Pushgateway
stand-in (metric pushes, and the /-/healthy answer the flows check before pushing)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

from tests.support.http_fakes import QuietHandler


class PostRecorder:
    """Hands each POST's path and body to `record` and answers 200; GET /-/healthy answers 200 too. Started on
    creation, on a free loopback port."""

    def __init__(self, record: Callable[[str, bytes], None]) -> None:
        class Recorder(QuietHandler):
            def do_GET(self) -> None:
                self.send_response(200 if self.path == "/-/healthy" else 404)
                self.end_headers()

            def do_POST(self) -> None:
                record(self.path, self.rfile.read(int(self.headers.get("content-length") or 0)))
                self.send_response(200)
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def post_recorder(record: Callable[[str, bytes], None]) -> Iterator[str]:
    """A PostRecorder for the `with` block; yields its base URL."""
    recorder = PostRecorder(record)
    try:
        yield recorder.base_url
    finally:
        recorder.stop()


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, list[dict]]]:
    """Yields the URL to configure and the list the posted bodies are appended to."""
    received: list[dict] = []
    with post_recorder(lambda _path, body: received.append(json.loads(body))) as base:
        yield f"{base}/hook", received


@contextmanager
def fake_pushgateway() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """Yields the Pushgateway URL and the pushes (path `/metrics/job/<job>`, text exposition body) it received."""
    pushes: list[tuple[str, str]] = []
    with post_recorder(lambda path, body: pushes.append((path, body.decode()))) as base:
        yield base, pushes
