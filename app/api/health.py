"""Liveness (/health), readiness (/ready) and Prometheus metrics (/metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.core.db import ping
from app.observability.metrics import render_metrics

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: the process answers. No dependency is checked."""
    return {"status": "healthy"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 only when Postgres and the vector index both answer and the worker has room for another
    request; else 503 naming what is down (`capacity` when every in-flight slot is taken)."""
    checks: dict[str, str] = {}
    gauge = request.app.state.in_flight
    checks["capacity"] = (f"saturated: {gauge.in_flight} of {gauge.limit} requests in progress" if gauge.saturated
                          else "ok")
    try:
        await run_in_threadpool(ping, request.app.state.engine)
        checks["postgres"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["postgres"] = f"down: {exc.__class__.__name__}"
    try:
        count = await run_in_threadpool(request.app.state.vector_index.count)
        checks["vector_index"] = "ok" if count > 0 else "down: the index is empty"
    except Exception as exc:  # noqa: BLE001
        checks["vector_index"] = f"down: {exc}"
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        return JSONResponse(
            status_code=503,
            content={"status": "unavailable", "down": down, "checks": checks,
                     "detail": f"not ready: {', '.join(down)} unavailable", "error_code": "not_ready"},
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready", "checks": checks})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    settings = request.app.state.settings
    folders = {"data": settings.data_dir}
    if settings.vector_backend == "edge":
        folders["index"] = settings.resolved_index_dir
    if settings.backup_storage == "local":
        folders["backups"] = settings.resolved_backup_dir
    body, content_type = await run_in_threadpool(
        render_metrics, request.app.state.engine, settings.active_session_window_s,
        settings.metrics_multiproc_dir is not None, settings.metrics_multiproc_dir, folders,
        settings.active_sessions_refresh_s, settings.active_sessions_query_timeout_s,
    )
    return Response(content=body, media_type=content_type)
