"""Chat with sources, as one JSON answer or as Server-Sent Events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from app.api.deps import ChatServiceDep, RequestIdDep, json_answer
from app.api.schemas import ChatRequest, ChatResponse

router = APIRouter(prefix="/chat", tags=["chat"])


@router.post("", response_model=ChatResponse)
async def chat(body: ChatRequest, service: ChatServiceDep, request_id: RequestIdDep) -> Response:
    """Answer a question from the book, with cited sources."""
    # `async def` with the blocking work, the JSON included, in one explicit hop: a sync endpoint with a response
    # model costs FastAPI a second thread-pool hop to validate the returned model.
    return await run_in_threadpool(lambda: json_answer(service.chat(body, request_id)))


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/stream", responses={200: {"content": {"text/event-stream": {}}}})
async def chat_stream(body: ChatRequest, service: ChatServiceDep, request_id: RequestIdDep) -> StreamingResponse:
    """The same answer as Server-Sent Events: `start`, `delta` events, then `final` (sources, usage)."""
    started = time.perf_counter()
    prepared = await run_in_threadpool(service.prepare_stream, body, request_id)

    async def events() -> AsyncIterator[str]:
        ended = False  # `final` and `error` are sent after the query_log row is written
        try:
            async for event, data in iterate_in_threadpool(service.stream_events(body, request_id, prepared, started)):
                ended = event in ("final", "error")
                yield _sse(event, data)
        finally:
            if not ended:  # the reader disconnected mid-stream: the stream is cancelled, the row still written
                with anyio.CancelScope(shield=True):
                    await run_in_threadpool(service.log_client_closed, body, request_id, started)

    return StreamingResponse(
        events(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Request-ID": str(request_id)},
    )
