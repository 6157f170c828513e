"""moto's server on 127.0.0.1: a real S3 / Secrets Manager endpoint for the tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx


class MotoServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        executable = Path(sys.executable).parent / "moto_server"
        self.process = subprocess.Popen([str(executable), "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.endpoint_url}/moto-api/", timeout=1).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)

    def reset(self) -> None:
        httpx.post(f"{self.endpoint_url}/moto-api/reset", timeout=5)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
