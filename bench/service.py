"""The query service as a real `python -m app serve` subprocess on a free loopback port (benchmarks and tests)."""

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

from bench.harness import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Service:
    base: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def rss_kib(self) -> int:
        """The worker's resident memory (VmRSS) from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


@contextmanager
def run_service(env: dict[str, str], log_path: Path, ready_path: str = "/ready", timeout_s: float = 180) -> Iterator[Service]:
    """Start the service with `env` (on top of os.environ), wait until `ready_path` answers 200, stop it after."""
    port = free_port()
    full_env = {**os.environ, "LOG_LEVEL": "WARNING", **env, "API_PORT": str(port), "API_HOST": "127.0.0.1"}
    log = open(log_path, "wb")
    process = subprocess.Popen([sys.executable, "-m", "app", "serve"], cwd=PROJECT_ROOT, env=full_env,
                               stdout=log, stderr=subprocess.STDOUT)
    service = Service(base=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{service.base}{ready_path}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not become ready:\n{service.log_tail()}")
            time.sleep(0.3)
        yield service
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
