"""Background processes started by `make up`, tracked by pid files."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


def running(pid_file: Path) -> bool:
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (PID 1 does not reap here) has stopped
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def stop_process(pid_file: Path, signals: int, timeout_s: float = 20) -> None:
    if not running(pid_file):
        pid_file.unlink(missing_ok=True)
        return
    pid = int(pid_file.read_text())
    for _ in range(signals):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    deadline = time.monotonic() + timeout_s
    while running(pid_file) and time.monotonic() < deadline:
        time.sleep(0.2)
    if running(pid_file):
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def start_background(command: Sequence[str], *, pid_file: Path, log_file: Path, cwd: Path,
                     env: Mapping[str, str] | None = None) -> int:
    """Start a command in its own session (stop_process signals the group), output appended to log_file;
    `env` is added to this process's environment."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen(list(command), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,  # nosec B603: our argv
                                   start_new_session=True, env={**os.environ, **env} if env else None)
    pid_file.write_text(str(process.pid))
    return process.pid


def wait_for_http(url: str, *, timeout_s: float, interval_s: float = 0.5) -> bool:
    """Poll url until it answers 200; False when timeout_s passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # nosec B310: http:// URLs built from settings
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
