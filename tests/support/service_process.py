"""The real query service in a subprocess (`python -m app serve`), for tests that need it over HTTP in its own
process: its OpenAI backends point at a local fake, its vector index at a Qdrant server that does not
exist, so /health answers and every /v1/chat is a 503 (index_unavailable) without loading a model."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.settings import PROJECT_ROOT
from tests.conftest import free_port
from tests.support.openai_server import FakeOpenAI


def wait_for_http(url: str, timeout_s: float, process: subprocess.Popen | None = None, what: str = "") -> None:
    """Until `url` answers 200; fails early when `process` exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what or url}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.1)


@dataclass
class RunningService:
    base_url: str
    process: subprocess.Popen


@contextmanager
def failing_service(database_url: str, data_dir: Path, output: Path | None = None, openai_key: str = "sk-test",
                    **env: str) -> Iterator[RunningService]:
    """A running service whose vector index is unreachable (stopped on exit if the test has not)."""
    openai = FakeOpenAI(accepted_keys={openai_key}).start()
    port = free_port()
    environment = {**os.environ, "DATABASE_URL": database_url, "VECTOR_BACKEND": "qdrant",
                   "QDRANT_URL": f"http://127.0.0.1:{free_port()}", "EMBEDDING_BACKEND": "openai",
                   "OPENAI_API_KEY": openai_key, "OPENAI_BASE_URL": openai.base_url, "DATA_DIR": str(data_dir),
                   "LOG_LEVEL": "WARNING", **env}
    sink = open(output, "wb") if output else subprocess.DEVNULL
    server = subprocess.Popen([sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=PROJECT_ROOT, env=environment, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/health", 60, server, "the service")
        yield RunningService(base, server)
    finally:
        server.terminate()
        server.wait(timeout=30)
        openai.stop()
        if output:
            sink.close()
