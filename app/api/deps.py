"""Dependencies shared by the routers, as Annotated aliases so route signatures stay short."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlmodel import Session

from app.services.chat import ChatService


def get_db(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


def get_chat_service(request: Request) -> ChatService:
    return request.app.state.chat_service


def get_request_id(request: Request) -> uuid.UUID:
    return uuid.UUID(request.state.request_id)


def require_scope(scope: str):
    """X-API-Key with `scope`; without a key, allowed only when ANONYMOUS_ACCESS is on (and not for admin)."""

    def check(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
        from app.api_keys import InvalidApiKey, MissingScope, authenticate

        if x_api_key is None:
            if scope != "admin" and request.app.state.settings.anonymous_access:
                return
            raise InvalidApiKey
        key = authenticate(engine=request.app.state.engine, key=x_api_key)
        if scope not in key.scopes:
            raise MissingScope(scope)

    return Depends(check)


SessionDep = Annotated[Session, Depends(get_db)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
RequestIdDep = Annotated[uuid.UUID, Depends(get_request_id)]
