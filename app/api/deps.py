"""Dependencies shared by the routers, as Annotated aliases so route signatures stay short."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlmodel import Session

from app.core.api_keys import InvalidApiKey, MissingScope, authenticate
from app.http.rate_limit import RateLimitExceeded, client_bucket, limiter_for
from app.services.chat import ChatService


def get_db(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


# Plain reads of the app's state are `async def`: FastAPI runs a sync dependency in the thread pool, a hop that
# costs more than the read itself on every request.
async def get_chat_service(request: Request) -> ChatService:
    return request.app.state.chat_service


async def get_request_id(request: Request) -> uuid.UUID:
    return uuid.UUID(request.state.request_id)


async def _rate_limit(request: Request, bucket: str, limit: int, who: str) -> None:
    """Count the request against `bucket` (app/http/rate_limit.py); 429 over the limit. The headers go on any answer."""
    limiter = limiter_for(request.app, request.app.state.settings)
    state = await limiter.hit_async(bucket, limit) if limiter else None
    if state is None:
        return
    request.state.rate_limit = state
    if not state.allowed:
        raise RateLimitExceeded(state, who)


def require_scope(scope: str):
    """X-API-Key with `scope`; without a key, allowed only when ANONYMOUS_ACCESS is on (and not for admin).

    Rate limits: a valid key has its own budget (RATE_LIMIT_PER_KEY); anonymous requests and invalid keys share
    their client address's stricter one (RATE_LIMIT_ANONYMOUS), so guessing keys is limited too.
    `async def`: an anonymous request spends a leased hit without leaving the event loop; the database calls (a key's
    lookup, a lease's claim) go to the thread pool.
    """

    async def check(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
        settings = request.app.state.settings
        address = client_bucket(request.client.host if request.client else "unknown")
        if x_api_key is None:
            if scope != "admin" and settings.anonymous_access:
                await _rate_limit(request, address, settings.rate_limit_anonymous, "client address")
                return
            raise InvalidApiKey
        try:
            key = await run_in_threadpool(authenticate, engine=request.app.state.engine, key=x_api_key)
        except InvalidApiKey:
            await _rate_limit(request, address, settings.rate_limit_anonymous, "client address")
            raise
        await _rate_limit(request, f"key:{key.id}", settings.rate_limit_per_key, "API key")
        if scope not in key.scopes:
            raise MissingScope(scope)

    return Depends(check)


def json_answer(model: BaseModel) -> Response:
    """The endpoint's response model as JSON, serialized where it was made (a worker thread): returned as a Response,
    FastAPI neither validates it again nor serializes it on the event loop. The route keeps its `response_model`
    for the OpenAPI schema."""
    return Response(model.model_dump_json(), media_type="application/json")


SessionDep = Annotated[Session, Depends(get_db)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
RequestIdDep = Annotated[uuid.UUID, Depends(get_request_id)]
