"""Background processes started by `make up`, tracked by pid files."""

from __future__ import annotations

import os
import signal
import time
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
