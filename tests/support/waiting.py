"""Waiting for a condition instead of sleeping: the one polling loop of the tests and benchmarks."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout_s: float, what: str, poll_s: float = 0.1,
               process: subprocess.Popen | None = None) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail after `timeout_s`, or as soon as
    `process` (the program the condition waits for) has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def answers_200(url: str, timeout_s: float = 2) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for_http(url: str, *, timeout_s: float, process: subprocess.Popen | None = None, what: str = "") -> None:
    """Until `url` answers 200."""
    wait_until(lambda: answers_200(url), timeout_s=timeout_s, what=what or url, process=process)
