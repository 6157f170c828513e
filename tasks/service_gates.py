"""Release gates run against the deployed query service over HTTP: a health window, then a smoke test."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import SecretStr

from tasks.probe import ask_canary


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@task(name="health-gate", cache_policy=NO_CACHE)
def health_gate(base_url: str, *, window_s: float, interval_s: float) -> dict[str, Any]:
    """/health and /ready must both answer 200 on every probe for `window_s` (at least one probe)."""
    logger = get_run_logger()
    probes, started = 0, time.monotonic()
    with httpx.Client(base_url=base_url, timeout=10) as http:
        while True:
            for path in ("/health", "/ready"):
                try:
                    response = http.get(path)
                    status, detail = response.status_code, response.text[:200]
                except httpx.HTTPError as exc:
                    status, detail = None, f"{exc.__class__.__name__}: {exc}"
                if status != 200:
                    reason = f"{path} answered {status or 'nothing'} after {time.monotonic() - started:.1f} s: {detail}"
                    logger.error("health gate failed: %s", reason)
                    return {"passed": False, "probes": probes, "reason": reason}
            probes += 1
            if time.monotonic() - started >= window_s:
                break
            time.sleep(interval_s)
    logger.info("health gate passed: %d probes over %.1f s", probes, time.monotonic() - started)
    return {"passed": True, "probes": probes, "window_s": round(time.monotonic() - started, 2)}


def _ask(http: httpx.Client, question: str) -> tuple[float, int, dict[str, Any]]:
    start = time.perf_counter()
    response = http.post("/v1/chat", json={"question": question})
    elapsed_ms = (time.perf_counter() - start) * 1000
    try:
        body = response.json()
    except ValueError:
        body = {}
    return elapsed_ms, response.status_code, body


@task(name="smoke-test", cache_policy=NO_CACHE)
def smoke_test(base_url: str, *, question: str, chapter: str, requests: int, p95_slo_ms: float,
               api_key: SecretStr | None = None, concurrency: int = 4) -> dict[str, Any]:
    """The canary question must be answered citing `chapter` (tasks/probe.py's check); then a burst of `requests`
    must all succeed with p95 latency under the SLO."""
    logger = get_run_logger()
    headers = {"X-API-Key": api_key.get_secret_value()} if api_key else {}
    with httpx.Client(base_url=base_url, timeout=30, headers=headers) as http:
        canary = ask_canary(http, question, chapter)
        result: dict[str, Any] = {"canary_status": canary.status_code, "canary": canary.detail}
        if not canary.success:
            reason = f"the canary question ({question!r}) failed: {canary.detail}"
            logger.error("smoke test failed: %s", reason)
            return {**result, "passed": False, "reason": reason}
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, requests))) as pool:
            try:
                outcomes = list(pool.map(lambda _: _ask(http, question), range(requests)))
            except httpx.HTTPError as exc:
                return {**result, "passed": False, "reason": f"the burst failed: {exc.__class__.__name__}: {exc}"}
    latencies = [elapsed for elapsed, _, _ in outcomes]
    errors = sum(1 for _, code, _ in outcomes if code != 200)
    result.update(requests=requests, errors=errors, p50_ms=round(sorted(latencies)[len(latencies) // 2], 1),
                  p95_ms=round(p95(latencies), 1), p95_slo_ms=p95_slo_ms)
    if errors:
        result.update(passed=False, reason=f"{errors} of {requests} burst requests failed")
    elif result["p95_ms"] > p95_slo_ms:
        result.update(passed=False, reason=f"p95 {result['p95_ms']} ms is over the SLO of {p95_slo_ms:g} ms")
    else:
        result["passed"] = True
    (logger.info if result["passed"] else logger.error)("smoke test: %s", result)
    return result
