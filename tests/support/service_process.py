"""The query service as a real `python -m app serve` subprocess on a free loopback port: the one way tests and
benchmarks start it in its own process, over HTTP.

`failing_service` is the service whose OpenAI backends point at a local fake and whose vector index is a Qdrant
server that does not exist, so /health answers and every /v1/chat is a 503 (index_unavailable) without loading a
model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.settings import PROJECT_ROOT
from tests.support.openai_server import FakeOpenAI
from tests.support.ports import free_port
from tests.support.waiting import answers_200, wait_until


@dataclass
class Service:
    base: str
    process: subprocess.Popen
    log_path: Path | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path else "(no log kept)"

    def rss_kib(self) -> int:
        """The worker's resident memory (VmRSS) from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def last_answer(url: str) -> str:
    """What `url` answers now (status and the start of the body), for a readiness timeout's message."""
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return f"no answer ({exc.__class__.__name__})"
    return f"{response.status_code} {response.text[:600]}"


@contextmanager
def run_service(env: dict[str, str], log_path: Path | None = None, ready_path: str = "/ready",
                timeout_s: float = 180, port: int | None = None, root: Path = PROJECT_ROOT) -> Iterator[Service]:
    """Start the service with `env` (on top of os.environ), wait until `ready_path` answers 200, stop it after.

    `port`: when something must know the address before the service starts (a site built with it); else a free one.
    `root`: the source tree it runs from (a benchmark's other revision); this checkout by default.
    """
    port = port or free_port()
    full_env = {**os.environ, "LOG_LEVEL": "WARNING", **env, "API_PORT": str(port), "API_HOST": "127.0.0.1"}
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=root, env=full_env,
                               stdout=log, stderr=subprocess.STDOUT)
    service = Service(base=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        try:
            wait_until(lambda: answers_200(f"{service.base}{ready_path}"), timeout_s=timeout_s,
                       what=f"the service's {ready_path}", process=process, poll_s=0.3)
        except AssertionError as exc:
            raise RuntimeError(f"the service did not become ready ({exc}; {ready_path} said: "
                               f"{last_answer(service.base + ready_path)}):\n{service.log_tail()}") from None
        yield service
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if log_path:
            log.close()  # type: ignore[union-attr]


@contextmanager
def failing_service(database_url: str, data_dir: Path, output: Path | None = None, openai_key: str = "sk-test",
                    **env: str) -> Iterator[Service]:
    """A running service whose vector index is unreachable (stopped on exit if the test has not)."""
    openai = FakeOpenAI(accepted_keys={openai_key}).start()
    try:
        with run_service({"DATABASE_URL": database_url, "VECTOR_BACKEND": "qdrant",
                          "QDRANT_URL": f"http://127.0.0.1:{free_port()}", "EMBEDDING_BACKEND": "openai",
                          "OPENAI_API_KEY": openai_key, "OPENAI_BASE_URL": openai.base_url, "DATA_DIR": str(data_dir),
                          **env}, output, ready_path="/health", timeout_s=60) as service:
            yield service
    finally:
        openai.stop()
