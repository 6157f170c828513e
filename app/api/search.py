"""Ranked chunks without an answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ChatServiceDep, RequestIdDep, json_answer
from app.api.schemas import SearchRequestBody, SearchResponse

router = APIRouter(prefix="/search", tags=["search"])


@router.post("", response_model=SearchResponse)
async def search(body: SearchRequestBody, service: ChatServiceDep, request_id: RequestIdDep) -> Response:
    """Hybrid search over the book (dense + sparse, RRF)."""
    # One thread-pool hop for the blocking work and the JSON (as in app/api/chat.py).
    return await run_in_threadpool(lambda: json_answer(service.search(body, request_id)))


@router.get("", response_model=SearchResponse)
async def search_by_query(params: Annotated[SearchRequestBody, Query()], service: ChatServiceDep,
                          request_id: RequestIdDep) -> Response:
    """The same search with query parameters: `?query=...&k=5&locale=en&chapter=ros2-fundamentals`."""
    return await run_in_threadpool(lambda: json_answer(service.search(params, request_id)))
