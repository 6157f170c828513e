"""The /v1 API: each resource's router under one prefix, with the key check and the error answers they share."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import chat, feedback, search, sessions
from app.api.deps import require_scope
from app.http.errors import ERROR_RESPONSES

api_router = APIRouter(prefix="/v1", dependencies=[require_scope("chat")], responses=ERROR_RESPONSES)
for resource in (chat, search, sessions, feedback):
    api_router.include_router(resource.router)
