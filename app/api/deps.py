"""Dependencies shared by the routers, as Annotated aliases so route signatures stay short."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from app.services.chat import ChatService


def get_db(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


def get_chat_service(request: Request) -> ChatService:
    return request.app.state.chat_service


def get_request_id(request: Request) -> uuid.UUID:
    return uuid.UUID(request.state.request_id)


SessionDep = Annotated[Session, Depends(get_db)]
ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
RequestIdDep = Annotated[uuid.UUID, Depends(get_request_id)]
